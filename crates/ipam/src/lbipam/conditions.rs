//! The conditions LB-IPAM writes, with Cilium's exact types, reasons and messages (spec §2.3, §4.2).

use std::net::IpAddr;

use api::Condition;

use super::annotations::InvalidIp;
use crate::count::Count;

/// On Services: whether every requested IP (or family) is assigned.
pub const REQUEST_SATISFIED: &str = "cilium.io/IPAMRequestSatisfied";

/// On pools: the number of addresses, available addresses and used addresses (reserved first/last
/// addresses count as used). Status `Unknown`, reason `noreason`, the number in the message.
pub const IPS_TOTAL: &str = "cilium.io/IPsTotal";
pub const IPS_AVAILABLE: &str = "cilium.io/IPsAvailable";
pub const IPS_USED: &str = "cilium.io/IPsUsed";
/// On pools: whether the pool overlaps an older pool or itself, and so hands out nothing.
pub const POOL_CONFLICT: &str = "cilium.io/PoolConflict";
/// On pools, cilia only: a block or the selector could not be understood. Written only while the
/// spec is invalid (the API rejects such specs, so this appears only when one slips past it).
pub const POOL_INVALID: &str = "cilium.io/PoolInvalid";

/// Why a Service's request is not (fully) satisfied: the `reason` and `message` of a `False`
/// `cilium.io/IPAMRequestSatisfied`. The display text is the condition message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsatisfied {
    #[error("No pool exists with a CIDR containing '{0}'")]
    NoPoolContaining(IpAddr),
    #[error("The pool with the CIDR containing '{0}', doesn't select this service")]
    PoolSelectorMismatch(IpAddr),
    #[error("The IP '{0}' is already allocated to another service")]
    AlreadyAllocated(IpAddr),
    #[error("The IP '{ip}' is already allocated to an incompatible service. Reason: {reason}")]
    Incompatible { ip: IpAddr, reason: &'static str },
    #[error("There are no enabled CiliumLoadBalancerIPPools that match this service")]
    NoPool,
    #[error("All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs")]
    OutOfIps,
    /// cilia only: Cilium logs and skips such entries, and a request made only of typos silently
    /// becomes a request for any address.
    #[error("{0}")]
    InvalidRequest(InvalidIp),
}

impl Unsatisfied {
    pub fn reason(&self) -> &'static str {
        match self {
            Unsatisfied::NoPoolContaining(_) | Unsatisfied::NoPool => "no_pool",
            Unsatisfied::PoolSelectorMismatch(_) => "pool_selector_mismatch",
            Unsatisfied::AlreadyAllocated(_) => "already_allocated",
            Unsatisfied::Incompatible { .. } => "already_allocated_incompatible_service",
            Unsatisfied::OutOfIps => "out_of_ips",
            Unsatisfied::InvalidRequest(_) => "invalid_request",
        }
    }

    pub fn condition(&self, generation: Option<i64>) -> Condition {
        Condition {
            type_: REQUEST_SATISFIED.into(),
            status: "False".into(),
            observed_generation: generation,
            last_transition_time: String::new(),
            reason: self.reason().into(),
            message: self.to_string(),
        }
    }
}

pub fn satisfied(generation: Option<i64>) -> Condition {
    Condition {
        type_: REQUEST_SATISFIED.into(),
        status: "True".into(),
        observed_generation: generation,
        last_transition_time: String::new(),
        reason: "satisfied".into(),
        message: String::new(),
    }
}

pub fn count(type_: &str, value: Count, generation: Option<i64>) -> Condition {
    Condition {
        type_: type_.into(),
        status: "Unknown".into(),
        observed_generation: generation,
        last_transition_time: String::new(),
        reason: "noreason".into(),
        message: value.to_string(),
    }
}

/// `True/cidr_overlap` with the message naming both ranges, or `False/resolved`.
pub fn conflict(message: Option<&str>, generation: Option<i64>) -> Condition {
    let (status, reason, message) = match message {
        Some(m) => ("True", "cidr_overlap", m.to_string()),
        None => ("False", "resolved", String::new()),
    };
    Condition {
        type_: POOL_CONFLICT.into(),
        status: status.into(),
        observed_generation: generation,
        last_transition_time: String::new(),
        reason: reason.into(),
        message,
    }
}

pub fn invalid(problems: &[String], generation: Option<i64>) -> Condition {
    Condition {
        type_: POOL_INVALID.into(),
        status: "True".into(),
        observed_generation: generation,
        last_transition_time: String::new(),
        reason: "invalid_spec".into(),
        message: problems.join("; "),
    }
}

/// Removes the condition of `type_`; returns whether there was one.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}
