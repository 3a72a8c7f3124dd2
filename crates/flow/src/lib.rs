//! Hubble-style flows.
//!
//! [`Flow`] is the one value every part of cilia passes around when it talks about a packet the
//! datapath saw: the agent builds it from BPF trace/drop events, the Observer API serves it, and
//! `cilia observe` prints it. Its field names and enum numbers follow Hubble's `flow.proto`
//! (package `flow`) so that the conversion to the wire type is a rename, never a reinterpretation.

pub mod client;
pub mod compact;
pub mod convert;
pub mod filter;
pub mod filter_flags;
pub mod json;
pub mod merge;
pub mod model;
pub mod proto;
pub mod server;
pub mod summary;
pub mod table;
pub mod testing;
pub mod time_spec;

pub use model::{
    DropReason, Endpoint, EventType, Flow, FlowType, Ip, IpVersion, Layer4, NetworkInterface, Service, TcpFlags,
    TraceObservationPoint, TrafficDirection, Verdict,
};
