//! Rust mirror of `bpf/include/tunnel_abi.h`: the tunnel map and the overlay settings. Sizes are
//! asserted here as `_Static_assert` does in C.

use std::mem::size_of;

pub const MAP_TUNNEL: &str = "cilia_tunnel_map";
pub const MAP_OVERLAY_CONFIG: &str = "cilia_overlay_config";
/// The other nodes' addresses, `__be32` → `u32` (1): VXLAN packets from anyone else are dropped.
pub const MAP_TUNNEL_PEERS: &str = "cilia_tunnel_peers";
/// Every map pin of the overlay object.
pub const TUNNEL_MAPS: [&str; 3] = [MAP_TUNNEL, MAP_OVERLAY_CONFIG, MAP_TUNNEL_PEERS];

pub const TUNNEL_MAP_SIZE: u32 = 16384;
pub const TUNNEL_PEERS_SIZE: u32 = 4096;

/// `tunnel_info.flags`: a remote prefix, encapsulated towards `endpoint`.
pub const TUNNEL_F_ENCAP: u32 = 0x1;
/// `tunnel_info.flags`: a prefix of this node; `identity` is its packets' VNI.
pub const TUNNEL_F_LOCAL: u32 = 0x2;

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
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlayConfig {
    pub encap_ifindex: u32,
    pub host_identity: u32,
}

const _: () = assert!(size_of::<TunnelInfo>() == 12);
const _: () = assert!(size_of::<OverlayConfig>() == 8);
// struct tunnel_key4 is { __u32 prefixlen; __be32 addr; }, aya's Key<u32>.
const _: () = assert!(size_of::<aya::maps::lpm_trie::Key<TunnelAddr>>() == 8);

// SAFETY: both are `#[repr(C)]` and made only of u32 fields (sizes asserted above), so they have
// no padding and every bit pattern is valid: aya may copy them to and from the kernel as bytes.
#[allow(unsafe_code)]
unsafe impl aya::Pod for TunnelInfo {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl aya::Pod for OverlayConfig {}
