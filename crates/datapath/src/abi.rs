//! Rust mirrors of `bpf/include/abi.h`, the C/Rust ABI of the datapath's maps.
//!
//! Every struct here is `#[repr(C)]` with the field order, types and size of its C twin. The
//! tests compare them with the layouts the compiler recorded in the BTF of the BPF objects
//! (`abi_layout_tests.rs`, `abi_maps_tests.rs`) and the constants with the C headers
//! (`abi_consts_tests.rs`). Addresses and ports are kept in network byte order, exactly as the BPF
//! programs read them from packets; the accessors convert.

use std::net::Ipv4Addr;

// ---- map names (pinned by these names in the node's bpffs directory) ----
pub const MAP_SERVICES: &str = "cilia_lb4_services";
pub const MAP_BACKENDS: &str = "cilia_lb4_backends";
pub const MAP_REVNAT: &str = "cilia_lb4_reverse_nat";
pub const MAP_MAGLEV: &str = "cilia_lb4_maglev";
pub const MAP_AFFINITY: &str = "cilia_lb4_affinity";
pub const MAP_AFFINITY_MATCH: &str = "cilia_lb_affinity_match";
pub const MAP_CT: &str = "cilia_ct4_global";
pub const MAP_SNAT: &str = "cilia_snat_v4";
pub const MAP_SOCK_REV: &str = "cilia_lb4_reverse_sk";
pub const MAP_NETDEVS: &str = "cilia_netdevs";
/// L2 announcements: IPv4 responder, `{ip4, ifindex}` → [`L2ResponderEntry`].
pub const MAP_L2_RESP4: &str = "cilia_l2_resp4";
/// L2 announcements: IPv6 responder, `{ip6, ifindex}` → [`L2ResponderEntry`].
pub const MAP_L2_RESP6: &str = "cilia_l2_resp6";
/// L2 announcements: the agent's heartbeat ([`L2Liveness`], array of one).
pub const MAP_L2_LIVENESS: &str = "cilia_l2_live";

/// Ports north-south SNAT allocates (`NAT_PORT_MIN`/`NAT_PORT_MAX` in abi.h): above Linux's default
/// ephemeral range, so the node's own connections never take a port the SNAT map holds.
pub const NAT_PORT_MIN: u16 = 61000;
pub const NAT_PORT_MAX: u16 = 65535;
pub const MAP_CONFIG: &str = "cilia_config";

/// Every pinned map, for listing and removal.
pub const ALL_MAPS: [&str; 14] = [
    MAP_SERVICES,
    MAP_BACKENDS,
    MAP_REVNAT,
    MAP_MAGLEV,
    MAP_AFFINITY,
    MAP_AFFINITY_MATCH,
    MAP_CT,
    MAP_SNAT,
    MAP_SOCK_REV,
    MAP_NETDEVS,
    MAP_CONFIG,
    MAP_L2_RESP4,
    MAP_L2_RESP6,
    MAP_L2_LIVENESS,
];

// ---- default map sizes (max entries; [`crate::DatapathConfig`] may override them) ----
pub const LB_SERVICES_MAP_SIZE: u32 = 65536;
pub const LB_BACKENDS_MAP_SIZE: u32 = 65536;
pub const LB_REVNAT_MAP_SIZE: u32 = 65536;
pub const LB_MAGLEV_MAP_SIZE: u32 = 1024;
pub const LB_AFFINITY_MAP_SIZE: u32 = 65536;
pub const CT_MAP_SIZE: u32 = 262_144;
pub const SNAT_MAP_SIZE: u32 = 131_072;
pub const SOCK_REV_MAP_SIZE: u32 = 65536;
/// A /24 of pods and the node's devices; the agent sizes the map from its pod CIDR.
pub const NETDEV_MAP_SIZE: u32 = 320;
/// Each responder map: (address, device) pairs per family.
pub const L2_RESPONDER_MAP_SIZE: u32 = 65536;

// ---- constants ----
pub const LB_MAGLEV_LUT_SIZE: usize = 16381;

pub const LB_SCOPE_ALL: u8 = 0;
pub const LB_SCOPE_LOCAL: u8 = 1;

bitflags::bitflags! {
    /// `lb4_service.flags` (`SVC_F_*`).
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct SvcFlags: u8 {
        const EXTERNAL_IP = 0x01;
        const NODEPORT = 0x02;
        /// externalTrafficPolicy: Local; north-south uses the LOCAL scope.
        const ETP_LOCAL = 0x04;
        /// internalTrafficPolicy: Local; in-cluster uses the LOCAL scope.
        const ITP_LOCAL = 0x08;
        /// sessionAffinity: ClientIP; the frontend row's `backend_id` holds the timeout.
        const AFFINITY = 0x10;
        const LOADBALANCER = 0x20;
        /// Reachable from outside the cluster (all but ClusterIP).
        const ROUTABLE = 0x40;
        /// The ICMP row of a VIP: answer echo requests.
        const ICMP_ECHO = 0x80;
    }
}

pub const LB_ALG_RANDOM: u8 = 1;
pub const LB_ALG_MAGLEV: u8 = 2;

pub const BE_STATE_ACTIVE: u8 = 0;
pub const BE_STATE_TERMINATING: u8 = 1;
pub const BE_F_NODE_LOCAL: u8 = 0x10;
pub const BE_STATE_MASK: u8 = 0x0f;

pub const CT_SERVICE: u8 = 1;
pub const CT_EGRESS: u8 = 2;
pub const NAT_EGRESS: u8 = 3;
pub const NAT_INGRESS: u8 = 4;

bitflags::bitflags! {
    /// `nat_entry.flags` (`NAT_F_*`), kept on the NAT_INGRESS entry (the one that owns the port).
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct NatFlags: u16 {
        /// The backend answered.
        const SEEN_REPLY = 0x1;
        /// The client sent FIN.
        const FIN_FWD = 0x2;
        /// The backend sent FIN.
        const FIN_REV = 0x4;
        /// Either side reset the connection.
        const RST = 0x8;
    }
}

bitflags::bitflags! {
    /// `ct_entry.flags` (`CT_F_*`).
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct CtFlags: u8 {
        /// Created by a north-south hook.
        const NODEPORT = 0x01;
        /// The flow is also source-NATed to a node address.
        const SNAT = 0x02;
        /// Saw FIN or RST.
        const CLOSING = 0x04;
        const SEEN_REPLY = 0x08;
    }
}

/// Every this many forward packets an established flow also refreshes its reply entry
/// (`CT_REPLY_SYNC_PACKETS`, bpf/lib/conntrack.h `ct_reply_sync_due`).
pub const CT_REPLY_SYNC_PACKETS: u64 = 64;

bitflags::bitflags! {
    /// `dp_config.flags` (`CFG_F_*`).
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct ConfigFlags: u32 {
        /// The cgroup hooks translate.
        const SOCKET_LB = 0x01;
    }
}

bitflags::bitflags! {
    /// `netdev_info.flags` (`NETDEV_F_*`, see bpf/lib/devices.h).
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct NetdevFlags: u32 {
        /// A pod's host-side veth: deliver to its peer with bpf_redirect_peer.
        const POD = 0x01;
    }
}

/// Source address of hairpin flows (a pod reaching itself through a service); abi.h has it as
/// `LB_HAIRPIN_ADDR_BE`, the address's bytes read as a little-endian u32.
pub const LB_HAIRPIN_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 42, 1);

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Key of the services map: frontend row (slot 0) or backend slot row (1..count).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4Key {
    pub address: [u8; 4],
    pub dport: u16,
    pub backend_slot: u16,
    pub proto: u8,
    pub scope: u8,
    pub pad: [u8; 2],
}

/// Value of the services map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4Service {
    /// Slot rows: the backend id. Frontend row: the affinity timeout in seconds.
    pub backend_id: u32,
    pub count: u16,
    pub rev_nat_index: u16,
    pub flags: SvcFlags,
    pub algorithm: u8,
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4Backend {
    pub address: [u8; 4],
    pub port: u16,
    pub proto: u8,
    pub flags: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4ReverseNat {
    pub address: [u8; 4],
    pub port: u16,
    pub pad: u16,
}

/// One Maglev lookup table: backend ids indexed by flow hash modulo [`LB_MAGLEV_LUT_SIZE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbMaglevTable {
    pub backend_ids: [u32; LB_MAGLEV_LUT_SIZE],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4AffinityKey {
    pub client_id: u64,
    pub rev_nat_index: u16,
    pub netns_cookie: u8,
    pub pad: [u8; 5],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LbAffinityVal {
    pub last_used_ns: u64,
    pub backend_id: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LbAffinityMatch {
    pub backend_id: u32,
    pub rev_nat_index: u16,
    pub pad: u16,
}

/// Conntrack and SNAT key: a directed 5-tuple plus the entry's role (`dir`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ct4Key {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub dir: u8,
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    pub expires_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub backend_id: u32,
    pub rev_nat_index: u16,
    pub flags: CtFlags,
    pub tcp_flags: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEntry {
    pub last_seen_ns: u64,
    pub to_addr: [u8; 4],
    pub to_port: u16,
    pub flags: NatFlags,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockRevKey {
    pub cookie: u64,
    pub address: [u8; 4],
    pub port: u16,
    pub pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevVal {
    pub address: [u8; 4],
    pub port: u16,
    pub rev_nat_index: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetdevInfo {
    /// A node device: the source of north-south flows leaving through it. A pod veth: the pod's
    /// address, the only source its packets may have.
    pub addr: [u8; 4],
    pub flags: NetdevFlags,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpConfig {
    pub netns_cookie: u64,
    pub flags: ConfigFlags,
    pub pad: u32,
}

/// Key of `cilia_l2_resp4`: an announced IPv4 address on one device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct L2ResponderV4Key {
    /// Network order, as in the ARP packet.
    pub ip4: [u8; 4],
    pub ifindex: u32,
}

/// Key of `cilia_l2_resp6`: an announced IPv6 address on one device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct L2ResponderV6Key {
    pub ip6: [u8; 16],
    pub ifindex: u32,
    /// Always 0 (the datapath looks up with 0).
    pub pad: u32,
}

/// Value of both responder maps: the MAC answers carry, and how many were sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2ResponderEntry {
    pub mac: [u8; 6],
    pub pad: [u8; 2],
    /// Only the datapath adds to it.
    pub responses: u64,
}

/// `cilia_l2_live[0]`: the responder answers only while `refreshed_ns != 0` and
/// `now - refreshed_ns <= max_age_ns` (CLOCK_MONOTONIC).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Liveness {
    pub refreshed_ns: u64,
    pub max_age_ns: u64,
}

/// Marks the ABI structs as plain old data for aya's typed maps.
macro_rules! impl_pod {
    ($($t:ty),+ $(,)?) => {
        $(
            // SAFETY: `$t` is `#[repr(C)]`, made only of integers, integer arrays and flag sets
            // (transparent integers that keep unknown bits), with field sizes that add up to its
            // size (checked by `abi_layout_tests`), so it has no padding bytes and every bit
            // pattern is a valid value: aya may copy it to and from the kernel as bytes.
            #[allow(unsafe_code)]
            unsafe impl aya::Pod for $t {}
        )+
    };
}

impl_pod!(
    Lb4Key,
    Lb4Service,
    Lb4Backend,
    Lb4ReverseNat,
    LbMaglevTable,
    Lb4AffinityKey,
    LbAffinityVal,
    LbAffinityMatch,
    Ct4Key,
    CtEntry,
    NatEntry,
    SockRevKey,
    SockRevVal,
    NetdevInfo,
    DpConfig,
    L2ResponderV4Key,
    L2ResponderV6Key,
    L2ResponderEntry,
    L2Liveness,
);

/// Network-order port as stored in maps, from a host-order port.
pub fn port_be(port: u16) -> u16 {
    port.to_be()
}

/// Host-order port from a map's network-order field.
pub fn port_host(port_be: u16) -> u16 {
    u16::from_be(port_be)
}

pub fn addr(octets: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(octets)
}

/// Name of an IP protocol number as the dumps print it.
pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_TCP => "TCP",
        IPPROTO_UDP => "UDP",
        IPPROTO_ICMP => "ICMP",
        _ => "ANY",
    }
}

impl Lb4Key {
    pub fn new(address: Ipv4Addr, port: u16, proto: u8, slot: u16, scope: u8) -> Self {
        Lb4Key { address: address.octets(), dport: port_be(port), backend_slot: slot, proto, scope, pad: [0; 2] }
    }

    pub fn port(&self) -> u16 {
        port_host(self.dport)
    }

    pub fn frontend(&self) -> Self {
        Lb4Key { backend_slot: 0, ..*self }
    }
}

impl Ct4Key {
    pub fn new(saddr: Ipv4Addr, sport: u16, daddr: Ipv4Addr, dport: u16, proto: u8, dir: u8) -> Self {
        Ct4Key {
            saddr: saddr.octets(),
            daddr: daddr.octets(),
            sport: port_be(sport),
            dport: port_be(dport),
            proto,
            dir,
            pad: [0; 2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The maps store ports exactly as the packet carries them: bytes in network order.
    #[test]
    fn keys_hold_ports_in_network_order() {
        let key = Lb4Key::new(Ipv4Addr::new(10, 96, 0, 10), 0x1f90, IPPROTO_TCP, 0, LB_SCOPE_ALL);
        assert_eq!(key.address, [10, 96, 0, 10]);
        assert_eq!(key.dport.to_ne_bytes(), [0x1f, 0x90]);
        assert_eq!(key.port(), 0x1f90);
    }
}
