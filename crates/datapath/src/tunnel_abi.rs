//! Rust mirror of `bpf/include/tunnel_abi.h`: the tunnel map and the overlay settings. The ABI
//! tests compare the layouts with the BTF of bpf_overlay.o and the constants with the header.

pub const MAP_TUNNEL: &str = "cilia_tunnel_map";
pub const MAP_OVERLAY_CONFIG: &str = "cilia_overlay_config";
/// The other nodes' addresses, `__be32` → `u32` (1): VXLAN packets from anyone else are dropped.
pub const MAP_TUNNEL_PEERS: &str = "cilia_tunnel_peers";
/// Every map pin of the overlay object.
pub const TUNNEL_MAPS: [&str; 3] = [MAP_TUNNEL, MAP_OVERLAY_CONFIG, MAP_TUNNEL_PEERS];

pub const TUNNEL_MAP_SIZE: u32 = 16384;
pub const TUNNEL_PEERS_SIZE: u32 = 4096;

bitflags::bitflags! {
    /// `tunnel_info.flags` (`TUNNEL_F_*`).
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct TunnelFlags: u32 {
        /// A remote prefix, encapsulated towards `endpoint`.
        const ENCAP = 0x1;
        /// A prefix of this node; `identity` is its packets' VNI.
        const LOCAL = 0x2;
    }
}

/// Cilium's reserved identity of the node itself.
pub const IDENTITY_HOST: u32 = 1;
/// Pods of a node carry this plus the node's pod CIDR number.
pub const OVERLAY_POD_IDENTITY_BASE: u32 = 256;

/// LPM trie data of `struct tunnel_key4` (the prefix length is aya's `Key::prefix_len`): the
/// address in network byte order.
pub type TunnelAddr = u32;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelInfo {
    /// Network byte order.
    pub endpoint: u32,
    pub identity: u32,
    pub flags: TunnelFlags,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlayConfig {
    pub encap_ifindex: u32,
    pub host_identity: u32,
}

// SAFETY: both are `#[repr(C)]` and made only of u32 fields (the flags a transparent u32 that
// keeps unknown bits), so they have no padding and every bit pattern is valid: aya may copy them
// to and from the kernel as bytes.
#[allow(unsafe_code)]
unsafe impl aya::Pod for TunnelInfo {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl aya::Pod for OverlayConfig {}
