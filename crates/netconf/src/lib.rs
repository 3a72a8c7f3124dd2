//! Kernel network configuration over rtnetlink, scoped to one network namespace at a time.
//!
//! A [`Netconf`] is a netlink connection bound to a namespace (the calling thread's, or one opened
//! by path or fd with [`Netns`]). On top of it sit the pieces a node agent needs:
//!
//! - the host gateway device, a veth pair `cilium_host`/`cilium_net` carrying the router IP, like
//!   Cilium's `cilium_host`/`cilium_net` ([`host_device`]);
//! - pod veths: host side `lxc<hash>` in the node namespace, peer born in the pod namespace with
//!   its address, routes and a static neighbour for the router IP ([`pod_veth`]);
//! - routes with MTU metrics and the kernel's route lookup (`ip route get`) ([`route`]);
//! - per-namespace sysctls ([`sysctl`]);
//! - a process's own `/etc/resolv.conf`, as `ip netns exec` gives one ([`resolv_conf`]);
//! - the flow-based VXLAN device of tunnel mode ([`vxlan`]).
//!
//! The agent's reconcilers program routes and the VXLAN device through the narrow traits of
//! [`ops`], implemented by [`Netconf`] and, for tests without root, by [`FakeNetconf`].
//!
//! Every error names the namespace, the device and the operation that failed.

pub mod error;
pub mod fake;
pub mod handle;
pub mod host_device;
pub mod link;
pub mod netns;
pub mod offload;
pub mod ops;
pub mod pod_veth;
pub mod resolv_conf;
pub mod route;
pub mod sysctl;
pub mod vxlan;

pub use error::{Error, Result};
pub use fake::{FakeCall, FakeNetconf, FakeNetconfState, FakeOp};
pub use handle::Netconf;
pub use host_device::{HOST_DEVICE, HostDevice, HostDeviceConfig, NET_DEVICE};
pub use link::LinkInfo;
pub use netns::Netns;
pub use ops::{RouteOps, VxlanOps};
pub use pod_veth::{PodVeth, PodVethSpec, host_ifname_for};
pub use route::{CILIA_ROUTE_PROTOCOL, MAIN_TABLE, Route, RouteLookup, RouteScope};
pub use vxlan::{VXLAN_DEVICE, VXLAN_PORT};
