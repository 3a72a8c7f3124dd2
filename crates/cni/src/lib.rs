//! CNI for cilia: the `cilia-cni` plugin executable and the node agent's side of it.
//!
//! The plugin ([`plugin`], binary `cilia-cni`) is thin: it validates the runtime's invocation
//! (CNI 1.0: env + stdin JSON), forwards ADD/DEL/CHECK over the agent's root-only unix socket
//! ([`protocol`], [`client`]) and prints the result or the CNI error object.
//!
//! The agent runs a [`CniServer`] inside its node namespace; requests go to [`PodNetwork`],
//! which wires pods with the `netconf` crate and addresses them from the node's pod CIDR with
//! the persistent [`PodIpAllocator`].

pub mod client;
pub mod config;
pub mod env;
pub mod error;
pub mod plugin;
pub mod pod_ips;
pub mod pod_network;
pub mod protocol;
pub mod result;
pub mod server;
pub mod version;

pub use config::{DEFAULT_AGENT_SOCKET, NetworkConfig};
pub use env::{Command, Invocation};
pub use error::CniError;
pub use pod_ips::{Allocation, PodIpAllocator, PodIpError};
pub use pod_network::{
    CniHandler, PodNetwork, PodNetworkConfig, PodNetworkError, ReconcileReport, WiredHook, WiredHookFuture,
};
pub use protocol::{Attachment, Request, Response};
pub use server::{CniServer, CniServerConfig, ServerError};
