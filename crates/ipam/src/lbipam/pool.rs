//! A `CiliumLoadBalancerIPPool` as LB-IPAM understands it (spec §2.2).

use api::Selector;
use api::selector::Requirement;
use api::types::{IpBlock, LbIpPool, LbIpPoolSpec, LbIpPoolStatus};
use chrono::{DateTime, FixedOffset};

use super::lbrange::RangeId;
use super::service::ServiceView;
use crate::addr::{BlockError, IpRange};
use crate::count::Count;

/// One usable block of a pool's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub span: IpRange,
    /// Reserve the first and last address: only for `cidr` blocks of 3+ addresses in a pool with
    /// `allowFirstLastIPs: "No"` (exactly that string; anything else allows them).
    pub reserve_edges: bool,
}

/// Parses the blocks in order. A `cidr` wins over `start`/`stop` in the same item. A block that does
/// not parse is skipped and reported: the rest of the pool still works, and the outcome depends only
/// on the current spec, so a restart reaches the same state.
pub fn parse_blocks(spec: &LbIpPoolSpec) -> (Vec<Block>, Vec<String>) {
    let no_edges = spec.allow_first_last_ips.as_deref() == Some("No");
    let mut blocks = Vec::new();
    let mut problems = Vec::new();
    for (i, block) in spec.blocks.iter().enumerate() {
        match parse_block(block) {
            Ok((span, is_cidr)) => {
                let reserve_edges = is_cidr && no_edges && span.size() >= Count::from(3u128);
                blocks.push(Block { span, reserve_edges });
            }
            Err(e) => problems.push(format!("spec.blocks[{i}]: {e}")),
        }
    }
    (blocks, problems)
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn parse_block(block: &IpBlock) -> Result<(IpRange, bool), BlockError> {
    match (nonempty(&block.cidr), nonempty(&block.start), nonempty(&block.stop)) {
        (Some(cidr), _, _) => IpRange::from_cidr(cidr).map(|r| (r, true)),
        (None, Some(start), stop) => IpRange::from_start_stop(start, stop).map(|r| (r, false)),
        (None, None, Some(stop)) => Err(BlockError::StopWithoutStart(stop.to_string())),
        (None, None, None) => Err(BlockError::Empty),
    }
}

/// Which Services a pool serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolSelector {
    /// No `serviceSelector`: every Service.
    All,
    Matching(Selector),
    /// The selector could not be parsed: no Service, rather than ones the user did not mean.
    Invalid,
}

impl PoolSelector {
    pub fn parse(spec: &LbIpPoolSpec) -> (PoolSelector, Option<String>) {
        match &spec.service_selector {
            None => (PoolSelector::All, None),
            Some(sel) => match Selector::from_label_selector(sel) {
                Ok(s) => (PoolSelector::Matching(s), None),
                Err(e) => (PoolSelector::Invalid, Some(e.under("spec.serviceSelector").to_string())),
            },
        }
    }

    pub fn matches(&self, view: &ServiceView) -> bool {
        match self {
            PoolSelector::All => true,
            PoolSelector::Matching(s) => s.requirements().iter().all(|r| requirement_holds(r, view)),
            PoolSelector::Invalid => false,
        }
    }
}

/// Kubernetes label-selector semantics over the Service's labels as selectors see them.
fn requirement_holds(requirement: &Requirement, view: &ServiceView) -> bool {
    match requirement {
        Requirement::Equals(k, v) => view.label(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => view.label(k) != Some(v.as_str()),
        Requirement::In(k, values) => view.label(k).is_some_and(|v| values.contains(v)),
        Requirement::NotIn(k, values) => view.label(k).is_none_or(|v| !values.contains(v)),
        Requirement::Exists(k) => view.label(k).is_some(),
        Requirement::DoesNotExist(k) => view.label(k).is_none(),
    }
}

/// Pools are ordered oldest first, by creation time and then name. The order decides which of two
/// overlapping pools is marked conflicting (the newer) and which pool generic requests try first.
pub type PoolOrder = (Option<DateTime<FixedOffset>>, String);

#[derive(Clone, Debug)]
pub struct Pool {
    pub name: String,
    pub generation: Option<i64>,
    pub created: Option<DateTime<FixedOffset>>,
    pub spec: LbIpPoolSpec,
    pub selector: PoolSelector,
    /// In block order.
    pub ranges: Vec<RangeId>,
    /// Unusable blocks and selector errors, reported in `cilium.io/PoolInvalid`.
    pub problems: Vec<String>,
    /// The `cilium.io/PoolConflict` message while the pool is conflicting.
    pub conflict: Option<String>,
    /// The status as last seen or written.
    pub status: LbIpPoolStatus,
}

impl Pool {
    pub fn new(pool: &LbIpPool) -> Self {
        let (selector, _) = PoolSelector::parse(&pool.spec);
        Pool {
            name: pool.metadata.name.clone(),
            generation: pool.metadata.generation,
            created: created(pool),
            spec: pool.spec.clone(),
            selector,
            ranges: Vec::new(),
            problems: Vec::new(),
            conflict: None,
            status: pool.status.clone(),
        }
    }

    pub fn order(&self) -> PoolOrder {
        (self.created, self.name.clone())
    }

    /// Disabled by the user or by a conflict: hands out no new addresses, keeps existing ones.
    pub fn is_enabled(&self) -> bool {
        !self.spec.disabled && self.conflict.is_none()
    }
}

/// A missing or unparsable creation time sorts first: such pools are treated as the oldest.
pub fn created(pool: &LbIpPool) -> Option<DateTime<FixedOffset>> {
    pool.metadata.creation_timestamp.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok())
}
