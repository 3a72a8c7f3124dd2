//! Rust mirror of the flow-event part of `bpf/include/abi.h` (`bpf/lib/events.h`): map names,
//! codes, and the counter and configuration values. The event record is decoded from bytes by
//! [`crate::events`] at the offsets of [`FlowEventRecord`].

use std::mem::size_of;

/// Ring buffer of `struct flow_event`.
pub const MAP_EVENTS: &str = "cilia_events";
/// `__u32 0 -> struct events_config`.
pub const MAP_EVENTS_CFG: &str = "cilia_events_cfg";
/// Per-CPU `__u32 EVENTS_STAT_* -> __u64`: events lost (the ring buffer had no room) and written.
pub const MAP_EVENTS_STATS: &str = "cilia_events_stats";
pub const EVENTS_STAT_LOST: u32 = 0;
pub const EVENTS_STAT_WRITTEN: u32 = 1;
/// Per-CPU `__u32 reason -> struct pkt_count`.
pub const MAP_DROP_COUNTS: &str = "cilia_drop_counts";
/// Per-CPU `__u32 observation point -> struct pkt_count`.
pub const MAP_FWD_COUNTS: &str = "cilia_fwd_counts";
/// Every map pin of the events.
pub const EVENTS_MAPS: [&str; 5] = [MAP_EVENTS, MAP_EVENTS_CFG, MAP_EVENTS_STATS, MAP_DROP_COUNTS, MAP_FWD_COUNTS];

pub const EVENTS_RINGBUF_SIZE: u32 = 1 << 20;
/// The datapath wakes the reader when this many bytes wait; below, the reader must drain on its
/// own at least every [`EVENTS_POLL_MS`] (see `bpf/lib/events.h`).
pub const EVENTS_WAKEUP_BYTES: u32 = 64 << 10;
pub const EVENTS_POLL_MS: u64 = 100;
pub const DROP_REASONS_MAX: u32 = 256;
pub const OBS_POINTS_MAX: u32 = 16;

pub const EVENT_DROP: u8 = 1;
pub const EVENT_TRACE: u8 = 4;

bitflags::bitflags! {
    /// `flow_event.flags` (`EV_F_*`).
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct EventFlags: u8 {
        /// A reply: reverse-NATed, or SYN+ACK.
        const REPLY = 0x01;
        /// An original direction packet: DNATed, or a SYN without ACK.
        const NOT_REPLY = 0x02;
        /// `svc_addr`/`svc_port`: the frontend the packet was sent to.
        const DNAT = 0x04;
        /// `svc_addr`/`svc_port`: the frontend the reply now comes from.
        const REV_NAT = 0x08;
        /// Headers could not be read: the tuple is partial.
        const TRUNCATED = 0x10;
        /// Encapsulated towards another node here.
        const ENCAP = 0x20;
        /// Redirected to a pod's veth.
        const TO_POD = 0x40;
    }
}

/// `events_config.level`.
pub const EVENTS_OFF: u32 = 0;
pub const EVENTS_MEDIUM: u32 = 1;
pub const EVENTS_ALL: u32 = 2;

/// `struct flow_event`, one record of the ring buffer: addresses and ports in network order,
/// the rest in host order. Only its layout is used (records are decoded field by field from the
/// ring buffer's bytes), so it has no `Pod` impl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEventRecord {
    /// CLOCK_MONOTONIC (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    /// `EVENT_*`.
    pub r#type: u8,
    pub obs_point: u8,
    pub drop_reason: u8,
    pub flags: EventFlags,
    pub ifindex: u32,
    pub pkt_len: u32,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub svc_addr: [u8; 4],
    pub svc_port: u16,
    pub pad: u16,
    pub out_ifindex: u32,
}

/// Size of `struct flow_event`.
pub const FLOW_EVENT_SIZE: usize = size_of::<FlowEventRecord>();

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventsConfig {
    pub level: u32,
    pub pad: u32,
}

/// Packets and bytes of one counter slot (one CPU's share in the per-CPU maps).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PktCount {
    pub packets: u64,
    pub bytes: u64,
}

// SAFETY: both are `#[repr(C)]` and made only of integers of one width, so they have no padding
// and every bit pattern is valid.
#[allow(unsafe_code)]
unsafe impl aya::Pod for EventsConfig {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl aya::Pod for PktCount {}
