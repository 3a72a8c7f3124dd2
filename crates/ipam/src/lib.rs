//! Address management for cilia.
//!
//! - [`range`]: an allocator over one inclusive address range whose memory and cost depend on the
//!   number of allocated addresses, never on the size of the range (a /8 or an IPv6 /64 is as cheap as
//!   a /30).
//! - [`lbipam`]: the LB-IPAM controller, which hands out LoadBalancer IPs to Services from
//!   `CiliumLoadBalancerIPPool`s. It is a pure reconciler: the operator feeds it objects and writes
//!   back the statuses it returns.
//!
//! Nothing here performs I/O or touches the kernel.
#![forbid(unsafe_code)]

pub mod addr;
pub mod count;
pub mod lbipam;
pub mod range;

pub use count::Count;
pub use lbipam::{LbIpam, LbIpamConfig, StatusUpdate};
