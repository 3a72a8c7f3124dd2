//! The flow model: what the datapath did to one packet, enriched by the agent with pod names,
//! identities, the Service and the node. Names and numbers mirror Hubble's `flow.proto`.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

/// One observed packet (Hubble's `flow.Flow`, the L3/L4 subset cilia produces).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flow {
    /// When the datapath saw the packet.
    pub time: DateTime<Utc>,
    /// Unique id of this flow, if the producer assigns one (Hubble `uuid`).
    pub uuid: String,
    pub verdict: Verdict,
    /// Only meaningful for `Verdict::Dropped`.
    pub drop_reason_desc: DropReason,
    pub ip: Option<Ip>,
    pub l4: Option<Layer4>,
    pub source: Endpoint,
    pub destination: Endpoint,
    pub flow_type: FlowType,
    /// The node whose agent captured the flow.
    pub node_name: String,
    /// The monitor message type and sub-type the flow was decoded from.
    pub event_type: EventType,
    pub source_service: Option<Service>,
    /// The Service the destination address was (or would have been) translated from.
    pub destination_service: Option<Service>,
    pub traffic_direction: TrafficDirection,
    /// Only meaningful for trace events.
    pub trace_observation_point: TraceObservationPoint,
    /// `None` means unknown, as Hubble's `BoolValue`.
    pub is_reply: Option<bool>,
    pub interface: Option<NetworkInterface>,
}

impl Flow {
    /// A trace event at `point` (monitor type 4, sub-type = the datapath's point number).
    pub fn is_trace(&self) -> bool {
        self.event_type.r#type == EventType::TRACE
    }

    /// A drop event (monitor type 1).
    pub fn is_drop(&self) -> bool {
        self.event_type.r#type == EventType::DROP
    }

    /// The L4 source port, if the protocol has ports.
    pub fn source_port(&self) -> Option<u16> {
        self.l4.as_ref().and_then(Layer4::source_port)
    }

    /// The L4 destination port, if the protocol has ports.
    pub fn destination_port(&self) -> Option<u16> {
        self.l4.as_ref().and_then(Layer4::destination_port)
    }
}

/// A workload end of a flow (Hubble `flow.Endpoint`). Empty fields mean "not known".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// The endpoint id on its node (Hubble `ID`); 0 when the address is not a local endpoint.
    pub id: u32,
    /// The numeric security identity (Hubble `identity`); reserved ones are `Endpoint::IDENTITY_*`.
    pub identity: u32,
    pub namespace: String,
    /// Labels as Hubble prints them: `source:key=value`, e.g. `k8s:app=webpod`.
    pub labels: Vec<String>,
    pub pod_name: String,
}

impl Endpoint {
    pub const IDENTITY_UNKNOWN: u32 = 0;
    pub const IDENTITY_HOST: u32 = 1;
    pub const IDENTITY_WORLD: u32 = 2;
    pub const IDENTITY_UNMANAGED: u32 = 3;
    pub const IDENTITY_HEALTH: u32 = 4;
    pub const IDENTITY_INIT: u32 = 5;
    pub const IDENTITY_REMOTE_NODE: u32 = 6;
    pub const IDENTITY_KUBE_APISERVER: u32 = 7;
    pub const IDENTITY_INGRESS: u32 = 8;

    /// The name Hubble prints instead of `ID:n` for a reserved identity.
    pub fn reserved_identity_name(identity: u32) -> Option<&'static str> {
        Some(match identity {
            Self::IDENTITY_HOST => "host",
            Self::IDENTITY_WORLD => "world",
            Self::IDENTITY_UNMANAGED => "unmanaged",
            Self::IDENTITY_HEALTH => "health",
            Self::IDENTITY_INIT => "init",
            Self::IDENTITY_REMOTE_NODE => "remote-node",
            Self::IDENTITY_KUBE_APISERVER => "kube-apiserver",
            Self::IDENTITY_INGRESS => "ingress",
            _ => return None,
        })
    }
}

/// The L3 header (Hubble `flow.IP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub encrypted: bool,
}

impl Ip {
    pub fn ip_version(&self) -> IpVersion {
        match self.source {
            IpAddr::V4(_) => IpVersion::Ipv4,
            IpAddr::V6(_) => IpVersion::Ipv6,
        }
    }
}

/// Hubble `flow.IPVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpVersion {
    #[default]
    NotUsed = 0,
    Ipv4 = 1,
    Ipv6 = 2,
}

/// The L4 header (Hubble `flow.Layer4`, a oneof).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer4 {
    Tcp { source_port: u16, destination_port: u16, flags: TcpFlags },
    Udp { source_port: u16, destination_port: u16 },
    Sctp { source_port: u16, destination_port: u16 },
    Icmpv4 { r#type: u8, code: u8 },
    Icmpv6 { r#type: u8, code: u8 },
}

impl Layer4 {
    pub fn source_port(&self) -> Option<u16> {
        match *self {
            Layer4::Tcp { source_port, .. } | Layer4::Udp { source_port, .. } | Layer4::Sctp { source_port, .. } => {
                Some(source_port)
            }
            Layer4::Icmpv4 { .. } | Layer4::Icmpv6 { .. } => None,
        }
    }

    pub fn destination_port(&self) -> Option<u16> {
        match *self {
            Layer4::Tcp { destination_port, .. }
            | Layer4::Udp { destination_port, .. }
            | Layer4::Sctp { destination_port, .. } => Some(destination_port),
            Layer4::Icmpv4 { .. } | Layer4::Icmpv6 { .. } => None,
        }
    }

    /// The protocol name as Hubble's `--protocol` filter spells it.
    pub fn protocol_name(&self) -> &'static str {
        match self {
            Layer4::Tcp { .. } => "tcp",
            Layer4::Udp { .. } => "udp",
            Layer4::Sctp { .. } => "sctp",
            Layer4::Icmpv4 { .. } => "icmpv4",
            Layer4::Icmpv6 { .. } => "icmpv6",
        }
    }
}

/// TCP header flags (Hubble `flow.TCPFlags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub fin: bool,
    pub syn: bool,
    pub rst: bool,
    pub psh: bool,
    pub ack: bool,
    pub urg: bool,
    pub ece: bool,
    pub cwr: bool,
    pub ns: bool,
}

impl TcpFlags {
    /// From the TCP header's flag bits: byte 13 in the low 8 bits, the NS bit (byte 12, bit 0) as
    /// bit 8.
    pub fn from_header_bits(bits: u16) -> TcpFlags {
        TcpFlags {
            fin: bits & 0x01 != 0,
            syn: bits & 0x02 != 0,
            rst: bits & 0x04 != 0,
            psh: bits & 0x08 != 0,
            ack: bits & 0x10 != 0,
            urg: bits & 0x20 != 0,
            ece: bits & 0x40 != 0,
            cwr: bits & 0x80 != 0,
            ns: bits & 0x100 != 0,
        }
    }

    /// The set flags in Hubble's print order (SYN, ACK, RST, FIN, PSH, ...), by their names.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.syn, "SYN"),
            (self.ack, "ACK"),
            (self.rst, "RST"),
            (self.fin, "FIN"),
            (self.psh, "PSH"),
            (self.urg, "URG"),
            (self.ece, "ECE"),
            (self.cwr, "CWR"),
            (self.ns, "NS"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }
}

/// Hubble `flow.Verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Verdict {
    #[default]
    Unknown = 0,
    Forwarded = 1,
    Dropped = 2,
    Error = 3,
    Audit = 4,
    Redirected = 5,
    Traced = 6,
    Translated = 7,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Verdict::Unknown,
        Verdict::Forwarded,
        Verdict::Dropped,
        Verdict::Error,
        Verdict::Audit,
        Verdict::Redirected,
        Verdict::Traced,
        Verdict::Translated,
    ];

    /// The proto enum name, which is also what the compact format prints.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Unknown => "VERDICT_UNKNOWN",
            Verdict::Forwarded => "FORWARDED",
            Verdict::Dropped => "DROPPED",
            Verdict::Error => "ERROR",
            Verdict::Audit => "AUDIT",
            Verdict::Redirected => "REDIRECTED",
            Verdict::Traced => "TRACED",
            Verdict::Translated => "TRANSLATED",
        }
    }

    pub fn from_name(name: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.name().eq_ignore_ascii_case(name))
    }

    pub fn from_number(n: i32) -> Verdict {
        Verdict::ALL.into_iter().find(|v| *v as i32 == n).unwrap_or_default()
    }
}

/// Hubble `flow.FlowType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowType {
    #[default]
    Unknown = 0,
    L3L4 = 1,
    L7 = 2,
    Sock = 3,
}

impl FlowType {
    pub fn name(self) -> &'static str {
        match self {
            FlowType::Unknown => "UNKNOWN_TYPE",
            FlowType::L3L4 => "L3_L4",
            FlowType::L7 => "L7",
            FlowType::Sock => "SOCK",
        }
    }

    pub fn from_number(n: i32) -> FlowType {
        match n {
            1 => FlowType::L3L4,
            2 => FlowType::L7,
            3 => FlowType::Sock,
            _ => FlowType::Unknown,
        }
    }
}

/// Hubble `flow.CiliumEventType`: the monitor message type and its sub-type (for traces the
/// datapath observation-point number, for drops the drop reason code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventType {
    pub r#type: i32,
    pub sub_type: i32,
}

impl EventType {
    /// Monitor message types (`pkg/monitor/api/types.go`).
    pub const DROP: i32 = 1;
    pub const DEBUG: i32 = 2;
    pub const CAPTURE: i32 = 3;
    pub const TRACE: i32 = 4;
    pub const POLICY_VERDICT: i32 = 5;

    /// A trace event at `point`.
    pub fn trace(point: TraceObservationPoint) -> EventType {
        EventType { r#type: Self::TRACE, sub_type: point.datapath_number().map_or(0, i32::from) }
    }

    /// A drop event for `reason`.
    pub fn drop(reason: DropReason) -> EventType {
        EventType { r#type: Self::DROP, sub_type: reason.0 as i32 }
    }
}

/// Hubble `flow.Service`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    pub name: String,
    pub namespace: String,
}

/// Hubble `flow.TrafficDirection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficDirection {
    #[default]
    Unknown = 0,
    Ingress = 1,
    Egress = 2,
}

impl TrafficDirection {
    pub fn name(self) -> &'static str {
        match self {
            TrafficDirection::Unknown => "TRAFFIC_DIRECTION_UNKNOWN",
            TrafficDirection::Ingress => "INGRESS",
            TrafficDirection::Egress => "EGRESS",
        }
    }

    pub fn from_number(n: i32) -> TrafficDirection {
        match n {
            1 => TrafficDirection::Ingress,
            2 => TrafficDirection::Egress,
            _ => TrafficDirection::Unknown,
        }
    }
}

/// Hubble `flow.NetworkInterface`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkInterface {
    pub index: u32,
    pub name: String,
}

/// Hubble `flow.TraceObservationPoint`. The discriminants are the *proto* numbers; the datapath
/// numbers differ (to-endpoint is 0 there, 101 here): see [`TraceObservationPoint::from_datapath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum TraceObservationPoint {
    #[default]
    Unknown = 0,
    ToProxy = 1,
    ToHost = 2,
    ToStack = 3,
    ToOverlay = 4,
    ToEndpoint = 101,
    FromEndpoint = 5,
    FromProxy = 6,
    FromHost = 7,
    FromStack = 8,
    FromOverlay = 9,
    FromNetwork = 10,
    ToNetwork = 11,
}

impl TraceObservationPoint {
    pub const ALL: [TraceObservationPoint; 13] = [
        TraceObservationPoint::Unknown,
        TraceObservationPoint::ToProxy,
        TraceObservationPoint::ToHost,
        TraceObservationPoint::ToStack,
        TraceObservationPoint::ToOverlay,
        TraceObservationPoint::ToEndpoint,
        TraceObservationPoint::FromEndpoint,
        TraceObservationPoint::FromProxy,
        TraceObservationPoint::FromHost,
        TraceObservationPoint::FromStack,
        TraceObservationPoint::FromOverlay,
        TraceObservationPoint::FromNetwork,
        TraceObservationPoint::ToNetwork,
    ];

    /// From the datapath's numbering (`pkg/monitor/api/types.go`: 0 = to-endpoint ... 11 =
    /// to-network).
    pub fn from_datapath(n: u8) -> TraceObservationPoint {
        match n {
            0 => TraceObservationPoint::ToEndpoint,
            1..=11 => Self::from_number(i32::from(n)),
            _ => TraceObservationPoint::Unknown,
        }
    }

    /// The datapath's number for this point; `None` for `Unknown`.
    pub fn datapath_number(self) -> Option<u8> {
        match self {
            TraceObservationPoint::Unknown => None,
            TraceObservationPoint::ToEndpoint => Some(0),
            other => Some(other as u8),
        }
    }

    pub fn from_number(n: i32) -> TraceObservationPoint {
        Self::ALL.into_iter().find(|p| *p as i32 == n).unwrap_or_default()
    }

    /// The proto enum name (`TO_OVERLAY`), used by JSON output.
    pub fn proto_name(self) -> &'static str {
        match self {
            TraceObservationPoint::Unknown => "UNKNOWN_POINT",
            TraceObservationPoint::ToProxy => "TO_PROXY",
            TraceObservationPoint::ToHost => "TO_HOST",
            TraceObservationPoint::ToStack => "TO_STACK",
            TraceObservationPoint::ToOverlay => "TO_OVERLAY",
            TraceObservationPoint::ToEndpoint => "TO_ENDPOINT",
            TraceObservationPoint::FromEndpoint => "FROM_ENDPOINT",
            TraceObservationPoint::FromProxy => "FROM_PROXY",
            TraceObservationPoint::FromHost => "FROM_HOST",
            TraceObservationPoint::FromStack => "FROM_STACK",
            TraceObservationPoint::FromOverlay => "FROM_OVERLAY",
            TraceObservationPoint::FromNetwork => "FROM_NETWORK",
            TraceObservationPoint::ToNetwork => "TO_NETWORK",
        }
    }

    /// The name the compact format prints and `--type trace:NAME` takes (`to-overlay`).
    pub fn name(self) -> &'static str {
        match self {
            TraceObservationPoint::Unknown => "unknown",
            TraceObservationPoint::ToProxy => "to-proxy",
            TraceObservationPoint::ToHost => "to-host",
            TraceObservationPoint::ToStack => "to-stack",
            TraceObservationPoint::ToOverlay => "to-overlay",
            TraceObservationPoint::ToEndpoint => "to-endpoint",
            TraceObservationPoint::FromEndpoint => "from-endpoint",
            TraceObservationPoint::FromProxy => "from-proxy",
            TraceObservationPoint::FromHost => "from-host",
            TraceObservationPoint::FromStack => "from-stack",
            TraceObservationPoint::FromOverlay => "from-overlay",
            TraceObservationPoint::FromNetwork => "from-network",
            TraceObservationPoint::ToNetwork => "to-network",
        }
    }

    pub fn from_name(name: &str) -> Option<TraceObservationPoint> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Hubble `flow.DropReason`: the datapath's drop code (130 and up). Open-ended on purpose: a code
/// this table does not know still travels and prints as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DropReason(pub u32);

/// (code, proto name, text `hubble observe` prints).
const DROP_REASONS: &[(u32, &str, &str)] = &[
    (130, "INVALID_SOURCE_MAC", "Invalid source mac"),
    (131, "INVALID_DESTINATION_MAC", "Invalid destination mac"),
    (132, "INVALID_SOURCE_IP", "Invalid source ip"),
    (133, "POLICY_DENIED", "Policy denied"),
    (134, "INVALID_PACKET_DROPPED", "Invalid packet"),
    (135, "CT_TRUNCATED_OR_INVALID_HEADER", "CT: Truncated or invalid header"),
    (136, "CT_MISSING_TCP_ACK_FLAG", "CT: Missing TCP ACK flag"),
    (137, "CT_UNKNOWN_L4_PROTOCOL", "CT: Unknown L4 protocol"),
    (138, "CT_CANNOT_CREATE_ENTRY_FROM_PACKET", "CT: Can't create entry from packet"),
    (139, "UNSUPPORTED_L3_PROTOCOL", "Unsupported L3 protocol"),
    (140, "MISSED_TAIL_CALL", "Missed tail call"),
    (141, "ERROR_WRITING_TO_PACKET", "Error writing to packet"),
    (142, "UNKNOWN_L4_PROTOCOL", "Unknown L4 protocol"),
    (143, "UNKNOWN_ICMPV4_CODE", "Unknown ICMPv4 code"),
    (144, "UNKNOWN_ICMPV4_TYPE", "Unknown ICMPv4 type"),
    (145, "UNKNOWN_ICMPV6_CODE", "Unknown ICMPv6 code"),
    (146, "UNKNOWN_ICMPV6_TYPE", "Unknown ICMPv6 type"),
    (147, "ERROR_RETRIEVING_TUNNEL_KEY", "Error retrieving tunnel key"),
    (148, "ERROR_RETRIEVING_TUNNEL_OPTIONS", "Error retrieving tunnel options"),
    (149, "INVALID_GENEVE_OPTION", "Invalid Geneve option"),
    (150, "UNKNOWN_L3_TARGET_ADDRESS", "Unknown L3 target address"),
    (151, "STALE_OR_UNROUTABLE_IP", "Stale or unroutable IP"),
    (152, "NO_MATCHING_LOCAL_CONTAINER_FOUND", "No matching local container found"),
    (153, "ERROR_WHILE_CORRECTING_L3_CHECKSUM", "Error while correcting L3 checksum"),
    (154, "ERROR_WHILE_CORRECTING_L4_CHECKSUM", "Error while correcting L4 checksum"),
    (155, "CT_MAP_INSERTION_FAILED", "CT: Map insertion failed"),
    (156, "INVALID_IPV6_EXTENSION_HEADER", "Invalid IPv6 extension header"),
    (157, "IP_FRAGMENTATION_NOT_SUPPORTED", "IP fragmentation not supported"),
    (158, "SERVICE_BACKEND_NOT_FOUND", "Service backend not found"),
    (160, "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT", "No tunnel/encapsulation endpoint"),
    (161, "FAILED_TO_INSERT_INTO_PROXYMAP", "Failed to insert into proxymap"),
    (162, "REACHED_EDT_RATE_LIMITING_DROP_HORIZON", "Reached EDT rate-limiting drop horizon"),
    (163, "UNKNOWN_CONNECTION_TRACKING_STATE", "Unknown connection tracking state"),
    (164, "LOCAL_HOST_IS_UNREACHABLE", "Local host is unreachable"),
    (
        165,
        "NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION",
        "No configuration available to perform policy decision",
    ),
    (166, "UNSUPPORTED_L2_PROTOCOL", "Unsupported L2 protocol"),
    (167, "NO_MAPPING_FOR_NAT_MASQUERADE", "No mapping for NAT masquerade"),
    (168, "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE", "Unsupported protocol for NAT masquerade"),
    (169, "FIB_LOOKUP_FAILED", "FIB lookup failed"),
    (170, "ENCAPSULATION_TRAFFIC_IS_PROHIBITED", "Encapsulation traffic is prohibited"),
    (171, "INVALID_IDENTITY", "Invalid identity"),
    (172, "UNKNOWN_SENDER", "Unknown sender"),
    (173, "NAT_NOT_NEEDED", "NAT not needed"),
    (174, "IS_A_CLUSTERIP", "Is a ClusterIP"),
    (175, "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND", "First logical datagram fragment not found"),
    (176, "FORBIDDEN_ICMPV6_MESSAGE", "Forbidden ICMPv6 message"),
    (177, "DENIED_BY_LB_SRC_RANGE_CHECK", "Denied by LB src range check"),
    (178, "SOCKET_LOOKUP_FAILED", "Socket lookup failed"),
    (179, "SOCKET_ASSIGN_FAILED", "Socket assign failed"),
    (180, "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL", "Proxy redirection not supported for protocol"),
    (181, "POLICY_DENY", "Policy denied by denylist"),
    (182, "VLAN_FILTERED", "VLAN traffic disallowed by VLAN filter"),
    (183, "INVALID_VNI", "Incorrect VNI from VTEP"),
    (184, "INVALID_TC_BUFFER", "Failed to update or lookup TC buffer"),
    (185, "NO_SID", "No SID was found for the IP address"),
    (186, "MISSING_SRV6_STATE", "SRv6 state was removed during tail call"),
    (187, "NAT46", "L3 translation from IPv4 to IPv6 failed (NAT46)"),
    (188, "NAT64", "L3 translation from IPv6 to IPv4 failed (NAT64)"),
    (189, "AUTH_REQUIRED", "Authentication required"),
    (190, "CT_NO_MAP_FOUND", "No conntrack map found"),
    (191, "SNAT_NO_MAP_FOUND", "No nat map found"),
    (192, "INVALID_CLUSTER_ID", "Invalid ClusterID"),
    (193, "UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP", "Unsupported packet protocol for DSR encapsulation"),
    (194, "NO_EGRESS_GATEWAY", "No egress gateway found"),
    (196, "TTL_EXCEEDED", "TTL exceeded"),
    (197, "NO_NODE_ID", "No node ID found"),
    (202, "DROP_HOST_NOT_READY", "Host datapath not ready"),
    (203, "DROP_EP_NOT_READY", "Endpoint policy program not available"),
];

impl DropReason {
    pub const UNKNOWN: DropReason = DropReason(0);
    pub const POLICY_DENIED: DropReason = DropReason(133);
    pub const INVALID_PACKET_DROPPED: DropReason = DropReason(134);
    pub const CT_MAP_INSERTION_FAILED: DropReason = DropReason(155);
    pub const SERVICE_BACKEND_NOT_FOUND: DropReason = DropReason(158);
    pub const NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT: DropReason = DropReason(160);
    pub const NO_MAPPING_FOR_NAT_MASQUERADE: DropReason = DropReason(167);
    pub const FIB_LOOKUP_FAILED: DropReason = DropReason(169);
    pub const POLICY_DENY: DropReason = DropReason(181);
    pub const INVALID_VNI: DropReason = DropReason(183);
    pub const CT_NO_MAP_FOUND: DropReason = DropReason(190);
    pub const SNAT_NO_MAP_FOUND: DropReason = DropReason(191);

    fn entry(self) -> Option<&'static (u32, &'static str, &'static str)> {
        DROP_REASONS.iter().find(|(code, _, _)| *code == self.0)
    }

    /// The proto enum name (`SERVICE_BACKEND_NOT_FOUND`), used by JSON output; `None` for a code
    /// the table does not know.
    pub fn proto_name(self) -> Option<&'static str> {
        if self.0 == 0 {
            return Some("DROP_REASON_UNKNOWN");
        }
        self.entry().map(|(_, name, _)| *name)
    }

    /// The text the compact format prints for a drop (`Service backend not found`).
    pub fn description(self) -> String {
        match self.entry() {
            Some((_, _, text)) => (*text).to_string(),
            None => self.0.to_string(),
        }
    }

    pub fn from_proto_name(name: &str) -> Option<DropReason> {
        DROP_REASONS.iter().find(|(_, n, _)| n.eq_ignore_ascii_case(name)).map(|(code, _, _)| DropReason(*code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datapath_observation_points_map_to_proto_numbers() {
        assert_eq!(TraceObservationPoint::from_datapath(0), TraceObservationPoint::ToEndpoint);
        assert_eq!(TraceObservationPoint::from_datapath(4), TraceObservationPoint::ToOverlay);
        assert_eq!(TraceObservationPoint::from_datapath(11), TraceObservationPoint::ToNetwork);
        assert_eq!(TraceObservationPoint::from_datapath(12), TraceObservationPoint::Unknown);
        for p in TraceObservationPoint::ALL {
            if let Some(n) = p.datapath_number() {
                assert_eq!(TraceObservationPoint::from_datapath(n), p);
            }
            assert_eq!(TraceObservationPoint::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn tcp_flags_from_header_bits() {
        let f = TcpFlags::from_header_bits(0x11);
        assert!(f.fin && f.ack && !f.syn);
        assert_eq!(f.names(), vec!["ACK", "FIN"]);
        assert_eq!(TcpFlags::from_header_bits(0x12).names(), vec!["SYN", "ACK"]);
        assert!(TcpFlags::from_header_bits(0x100).ns);
    }

    #[test]
    fn drop_reasons_have_names_and_text() {
        let r = DropReason::SERVICE_BACKEND_NOT_FOUND;
        assert_eq!(r.proto_name(), Some("SERVICE_BACKEND_NOT_FOUND"));
        assert_eq!(r.description(), "Service backend not found");
        assert_eq!(DropReason::from_proto_name("service_backend_not_found"), Some(r));
        assert_eq!(DropReason(250).description(), "250");
        assert_eq!(DropReason(250).proto_name(), None);
    }

    #[test]
    fn verdict_names_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::from_name(v.name()), Some(v));
            assert_eq!(Verdict::from_number(v as i32), v);
        }
        assert_eq!(Verdict::from_name("forwarded"), Some(Verdict::Forwarded));
    }
}
