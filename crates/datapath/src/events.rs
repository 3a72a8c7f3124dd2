//! Flow events of the datapath: the 48-byte records `bpf/lib/events.h` writes to the
//! `cilia_events` ring buffer, decoded to [`FlowEvent`] and encoded back (pure code, no kernel),
//! plus the names of observation points and drop reasons as Cilium and Hubble spell them.
//!
//! The record is `struct flow_event` of `bpf/include/abi.h`, mirrored by
//! [`FlowEventRecord`](crate::events_abi::FlowEventRecord), whose field offsets the codec uses.

use std::fmt;
use std::mem::offset_of;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::events_abi::{EVENT_DROP, EVENT_TRACE, EventFlags, FLOW_EVENT_SIZE, FlowEventRecord};

/// Offset of a field of `struct flow_event` in the record.
macro_rules! at {
    ($field:ident) => {
        offset_of!(FlowEventRecord, $field)
    };
}

/// Why a record could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("flow event of {0} bytes, expected {FLOW_EVENT_SIZE}")]
    Length(usize),
    #[error("flow event of unknown type {0} (1 drop, 4 trace)")]
    Type(u8),
}

/// Cilium's monitor message type of the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Drop,
    Trace,
}

impl EventKind {
    pub fn code(self) -> u8 {
        match self {
            EventKind::Drop => EVENT_DROP,
            EventKind::Trace => EVENT_TRACE,
        }
    }
}

/// Where a trace was taken, with Cilium's datapath codes (`pkg/monitor/api/types.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObservationPoint {
    ToEndpoint,
    ToHost,
    ToStack,
    ToOverlay,
    FromEndpoint,
    FromHost,
    FromStack,
    FromOverlay,
    FromNetwork,
    ToNetwork,
    /// A code this build does not name.
    Other(u8),
}

impl ObservationPoint {
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::ToEndpoint,
            2 => Self::ToHost,
            3 => Self::ToStack,
            4 => Self::ToOverlay,
            5 => Self::FromEndpoint,
            7 => Self::FromHost,
            8 => Self::FromStack,
            9 => Self::FromOverlay,
            10 => Self::FromNetwork,
            11 => Self::ToNetwork,
            other => Self::Other(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Self::ToEndpoint => 0,
            Self::ToHost => 2,
            Self::ToStack => 3,
            Self::ToOverlay => 4,
            Self::FromEndpoint => 5,
            Self::FromHost => 7,
            Self::FromStack => 8,
            Self::FromOverlay => 9,
            Self::FromNetwork => 10,
            Self::ToNetwork => 11,
            Self::Other(c) => c,
        }
    }

    /// The name `hubble observe` prints (`to-overlay`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ToEndpoint => "to-endpoint",
            Self::ToHost => "to-host",
            Self::ToStack => "to-stack",
            Self::ToOverlay => "to-overlay",
            Self::FromEndpoint => "from-endpoint",
            Self::FromHost => "from-host",
            Self::FromStack => "from-stack",
            Self::FromOverlay => "from-overlay",
            Self::FromNetwork => "from-network",
            Self::ToNetwork => "to-network",
            Self::Other(_) => "unknown",
        }
    }

    /// The `flow.TraceObservationPoint` enum name (`TO_OVERLAY`); the protobuf renumbers
    /// to-endpoint as 101, see [`Self::proto_number`].
    pub fn proto_name(self) -> &'static str {
        match self {
            Self::ToEndpoint => "TO_ENDPOINT",
            Self::ToHost => "TO_HOST",
            Self::ToStack => "TO_STACK",
            Self::ToOverlay => "TO_OVERLAY",
            Self::FromEndpoint => "FROM_ENDPOINT",
            Self::FromHost => "FROM_HOST",
            Self::FromStack => "FROM_STACK",
            Self::FromOverlay => "FROM_OVERLAY",
            Self::FromNetwork => "FROM_NETWORK",
            Self::ToNetwork => "TO_NETWORK",
            Self::Other(_) => "UNKNOWN_POINT",
        }
    }

    /// The `flow.TraceObservationPoint` number.
    pub fn proto_number(self) -> i32 {
        match self {
            Self::ToEndpoint => 101,
            Self::Other(_) => 0,
            other => i32::from(other.code()),
        }
    }
}

impl fmt::Display for ObservationPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A drop reason: Cilium's code (130 and up, `flow.DropReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropReason(pub u8);

impl DropReason {
    pub const INVALID: DropReason = DropReason(134);
    pub const WRITE_ERROR: DropReason = DropReason(141);
    pub const INVALID_SOURCE_IP: DropReason = DropReason(132);
    pub const CT_CREATE_FAILED: DropReason = DropReason(155);
    pub const NO_SERVICE: DropReason = DropReason(158);
    pub const NAT_NO_MAPPING: DropReason = DropReason(167);
    /// Every reason the datapath gives today.
    pub const ALL: [DropReason; 6] = [
        Self::INVALID_SOURCE_IP,
        Self::INVALID,
        Self::WRITE_ERROR,
        Self::CT_CREATE_FAILED,
        Self::NO_SERVICE,
        Self::NAT_NO_MAPPING,
    ];

    /// Cilium's text for the code, as `hubble observe` prints it for a drop.
    pub fn description(self) -> &'static str {
        match self.0 {
            132 => "Invalid source ip",
            134 => "Invalid packet",
            141 => "Error writing to packet",
            155 => "CT: Map insertion failed",
            158 => "Service backend not found",
            167 => "No mapping for NAT masquerade",
            _ => "Unknown reason",
        }
    }

    /// The `flow.DropReason` enum name, for JSON output and metric labels.
    pub fn proto_name(self) -> &'static str {
        match self.0 {
            132 => "INVALID_SOURCE_IP",
            134 => "INVALID_PACKET_DROPPED",
            141 => "ERROR_WRITING_TO_PACKET",
            155 => "CT_MAP_INSERTION_FAILED",
            158 => "SERVICE_BACKEND_NOT_FOUND",
            167 => "NO_MAPPING_FOR_NAT_MASQUERADE",
            _ => "DROP_REASON_UNKNOWN",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// One datapath event, as decoded. The fields are the record's; accessors interpret them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    /// CLOCK_MONOTONIC when the datapath wrote it; see [`monotonic_to_unix_ns`].
    pub monotonic_ns: u64,
    pub kind: EventKind,
    /// Traces: where. Drops carry code 0 here.
    pub obs_point: ObservationPoint,
    /// Drops: why (0 on traces).
    pub drop_reason: u8,
    pub flags: EventFlags,
    /// The device the program ran on.
    pub ifindex: u32,
    pub pkt_len: u32,
    /// The tuple as the packet left the program (after any translation).
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// The frontend, when [`Self::service`] says the LB translated.
    pub svc_addr: Ipv4Addr,
    pub svc_port: u16,
    /// Where a redirect sent the packet (0: the stack, or back where it came from).
    pub out_ifindex: u32,
}

/// How the LB translated the packet, with the frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// Sent to the frontend, now addressed to a backend.
    Dnat(SocketAddrV4),
    /// A backend's reply, now coming from the frontend.
    RevNat(SocketAddrV4),
}

impl Translation {
    pub fn frontend(self) -> SocketAddrV4 {
        match self {
            Translation::Dnat(a) | Translation::RevNat(a) => a,
        }
    }
}

impl FlowEvent {
    /// Decodes one ring-buffer record.
    pub fn parse(bytes: &[u8]) -> Result<FlowEvent, DecodeError> {
        let b: &[u8; FLOW_EVENT_SIZE] = bytes.try_into().map_err(|_| DecodeError::Length(bytes.len()))?;
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let ip_at = |o: usize| Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
        let port_at = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
        let kind = match b[at!(r#type)] {
            EVENT_DROP => EventKind::Drop,
            EVENT_TRACE => EventKind::Trace,
            other => return Err(DecodeError::Type(other)),
        };
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[at!(ts_ns)..at!(ts_ns) + 8]);
        Ok(FlowEvent {
            monotonic_ns: u64::from_ne_bytes(ts),
            kind,
            obs_point: ObservationPoint::from_code(b[at!(obs_point)]),
            drop_reason: b[at!(drop_reason)],
            flags: EventFlags::from_bits_retain(b[at!(flags)]),
            ifindex: u32_at(at!(ifindex)),
            pkt_len: u32_at(at!(pkt_len)),
            saddr: ip_at(at!(saddr)),
            daddr: ip_at(at!(daddr)),
            sport: port_at(at!(sport)),
            dport: port_at(at!(dport)),
            proto: b[at!(proto)],
            tcp_flags: b[at!(tcp_flags)],
            icmp_type: b[at!(icmp_type)],
            icmp_code: b[at!(icmp_code)],
            svc_addr: ip_at(at!(svc_addr)),
            svc_port: port_at(at!(svc_port)),
            out_ifindex: u32_at(at!(out_ifindex)),
        })
    }

    /// Encodes the record the datapath would have written (the padding zero).
    pub fn to_bytes(&self) -> [u8; FLOW_EVENT_SIZE] {
        let mut b = [0u8; FLOW_EVENT_SIZE];
        let mut put = |o: usize, bytes: &[u8]| b[o..o + bytes.len()].copy_from_slice(bytes);
        put(at!(ts_ns), &self.monotonic_ns.to_ne_bytes());
        put(at!(r#type), &[self.kind.code()]);
        put(at!(obs_point), &[self.obs_point.code()]);
        put(at!(drop_reason), &[self.drop_reason]);
        put(at!(flags), &[self.flags.bits()]);
        put(at!(ifindex), &self.ifindex.to_ne_bytes());
        put(at!(pkt_len), &self.pkt_len.to_ne_bytes());
        put(at!(saddr), &self.saddr.octets());
        put(at!(daddr), &self.daddr.octets());
        put(at!(sport), &self.sport.to_be_bytes());
        put(at!(dport), &self.dport.to_be_bytes());
        put(at!(proto), &[self.proto]);
        put(at!(tcp_flags), &[self.tcp_flags]);
        put(at!(icmp_type), &[self.icmp_type]);
        put(at!(icmp_code), &[self.icmp_code]);
        put(at!(svc_addr), &self.svc_addr.octets());
        put(at!(svc_port), &self.svc_port.to_be_bytes());
        put(at!(out_ifindex), &self.out_ifindex.to_ne_bytes());
        b
    }

    /// The drop reason of a drop event.
    pub fn drop_reason(&self) -> Option<DropReason> {
        (self.kind == EventKind::Drop).then_some(DropReason(self.drop_reason))
    }

    /// The observation point of a trace event.
    pub fn trace_point(&self) -> Option<ObservationPoint> {
        (self.kind == EventKind::Trace).then_some(self.obs_point)
    }

    /// Whether the packet is a reply, when the datapath could tell (reverse-NATed, SYN+ACK, echo
    /// reply) or an original (DNATed, SYN, echo request); `None` otherwise.
    pub fn is_reply(&self) -> Option<bool> {
        if self.flags.contains(EventFlags::REPLY) {
            Some(true)
        } else if self.flags.contains(EventFlags::NOT_REPLY) {
            Some(false)
        } else {
            None
        }
    }

    /// The LB's translation of this packet, if any.
    pub fn translation(&self) -> Option<Translation> {
        let frontend = SocketAddrV4::new(self.svc_addr, self.svc_port);
        if self.flags.contains(EventFlags::DNAT) {
            Some(Translation::Dnat(frontend))
        } else if self.flags.contains(EventFlags::REV_NAT) {
            Some(Translation::RevNat(frontend))
        } else {
            None
        }
    }

    /// Encapsulated towards another node by the program that wrote the event.
    pub fn encapsulated(&self) -> bool {
        self.flags.contains(EventFlags::ENCAP)
    }

    /// The headers could not be read (a malformed packet): the tuple is partial.
    pub fn truncated(&self) -> bool {
        self.flags.contains(EventFlags::TRUNCATED)
    }
}

/// Converts an event's CLOCK_MONOTONIC time to nanoseconds since the Unix epoch, given both
/// clocks read together now (`now_monotonic_ns`, `now_unix_ns`).
pub fn monotonic_to_unix_ns(event_ns: u64, now_monotonic_ns: u64, now_unix_ns: u64) -> u64 {
    now_unix_ns.saturating_sub(now_monotonic_ns.saturating_sub(event_ns))
}

/// Hubble's names of the TCP flags set in `flags`, in Hubble's order (`SYN`, `ACK`, `RST`, `FIN`, ...).
pub fn tcp_flag_names(flags: u8) -> Vec<&'static str> {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x04, "RST"),
        (0x01, "FIN"),
        (0x08, "PSH"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| *name).collect()
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
