//! cilia's eBPF datapath for kube-proxy-free service load balancing.
//!
//! The C programs live in `bpf/` (one header per concept under `bpf/lib/`, the C/Rust ABI in
//! `bpf/include/abi.h`); `build.rs` compiles them and this crate embeds, loads and attaches them:
//!
//! | program | hook | does |
//! |---|---|---|
//! | `from_container` | tcx ingress of pod veths (`lxc*`) | pod → frontend: backend, conntrack, DNAT; replies of local backends: reverse NAT |
//! | `to_container` | tcx egress of pod veths | reverse NAT of replies that reached the node elsewhere |
//! | `from_netdev` | tcx ingress of node devices (`eth1`) | NodePort / LoadBalancer / external IP: DNAT, SNAT for remote backends, reverse of both; ARP / NDP answers for announced addresses ([`l2`]) |
//! | `to_overlay`, `from_overlay` | tcx egress of `cilium_host`, ingress of `cilium_vxlan` | tunnel mode: VXLAN encapsulation by tunnel map, delivery of decapsulated packets ([`tunnel`]) |
//! | `sock4_*` | cgroup connect4, sendmsg4, recvmsg4, getpeername4 | socket-LB for the node's own processes |
//!
//! The agent opens a [`Datapath`] on a per-node bpffs directory and programs it through the
//! [`LbDatapath`] trait with desired state ([`ServiceEntry`] per frontend); controllers are tested
//! against [`FakeDatapath`]. Maps and links are pinned, so forwarding continues while the agent
//! restarts. L2 announcements program the ARP/NDP responder with [`LbDatapath::sync_l2`] and
//! announce takeovers with [`neigh_announce`]. Flow events (traces at observation points, drops
//! with a reason) come out of a ring buffer ([`events`], [`EventReader`]); drop and forward
//! counters are always on ([`LbDatapath::counters`]). The overlay of tunnel mode is driven through
//! [`OverlayDatapath`] ([`PinnedOverlay`], [`FakeOverlay`] in tests).
//! See `docs/datapath.md` for the packet walks and the inspection commands.

pub mod abi;
#[cfg(test)]
mod abi_consts_tests;
#[cfg(test)]
mod abi_layout_tests;
#[cfg(test)]
mod abi_maps_tests;
mod attach;
#[cfg(test)]
mod btf;
pub mod capacity;
mod datapath;
pub mod dump;
mod error;
pub mod event_maps;
pub mod events;
pub mod events_abi;
mod fake;
mod fake_overlay;
pub mod gc_sweep;
pub mod inventory;
pub mod l2;
pub mod lbstate;
mod loader;
pub mod maglev;
pub mod maps;
pub mod nat_gc;
pub mod neigh_announce;
pub mod objects;
mod overlay_datapath;
pub mod pins;
mod service;
mod sys;
pub mod tunnel;
pub mod tunnel_abi;

pub use attach::Direction;
pub use capacity::LbUsage;
pub use datapath::{Datapath, GcStats, LbDatapath, ct_list_pinned, lb_list_pinned, nat_list_pinned};
pub use error::{Error, Result};
pub use event_maps::{Count, DatapathCounters, EventMaps, EventReader, EventsLevel, ReadBatch};
pub use events::{DropReason, EventKind, FlowEvent, ObservationPoint, Translation};
pub use fake::{Attachment, FakeDatapath, FakeDatapathState};
pub use fake_overlay::{FakeOverlay, FakeOverlayCall, FakeOverlayOp, FakeOverlayState, OverlayAttachment};
pub use gc_sweep::GcSweep;
pub use l2::{L2Entry, L2Row, L2SyncStats, l2_entries_pinned, l2_list_pinned, l2_liveness_pinned};
pub use lbstate::SyncStats;
pub use loader::{DatapathConfig, remove_pins};
pub use overlay_datapath::{OverlayDatapath, PinnedOverlay};
pub use pins::{BPF_ROOT, ensure_bpffs_for, node_pin_dir};
pub use service::{Backend, BackendState, Frontend, LbAlgorithm, Protocol, ServiceEntry, ServiceKind};
pub use sys::{current_netns_cookie, ensure_bpffs, interface_name, is_bpffs};
pub use tunnel::{Overlay, TunnelEntry, TunnelSyncStats, remove_overlay, tunnel_list_pinned, tunnel_table_pinned};
