//! Pool status: counts and the conflict and validity conditions (spec §2.3, §5.9).
//!
//! Counts sum over all of a pool's ranges, disabled and conflicting ones included. Reserved
//! first/last addresses count as used; a shared address counts once. All three count conditions
//! are written together every time (Cilium v1.18.0 skipped the others when one changed, leaving
//! "IPS AVAILABLE" blank on new pools: issues #41321, #41536).

use api::Condition;

use super::LbIpam;
use super::conditions::{self, IPS_AVAILABLE, IPS_TOTAL, IPS_USED, POOL_INVALID};
use super::lbrange::{LbRange, Slot};
use crate::count::Count;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    pub total: Count,
    pub available: Count,
    pub used: Count,
}

impl LbIpam {
    pub fn pool_counts(&self, name: &str) -> Option<PoolCounts> {
        let pool = self.pools.get(name)?;
        let (total, used) = pool
            .ranges
            .iter()
            .filter_map(|id| self.ranges.get(id))
            .fold((Count::ZERO, Count::ZERO), |(t, u), r| (t + r.span.size(), u + self.used_in(r)));
        Some(PoolCounts { total, available: total.saturating_sub(used), used })
    }

    /// Addresses of the range that are reserved or held, whether through this range or through an
    /// overlapping one: the count then depends only on which addresses are in use, not on which of
    /// two overlapping pools handed them out, so it is the same after a restart.
    fn used_in(&self, range: &LbRange) -> Count {
        let mut used = range.used_here();
        for other in range.overlaps.iter().filter_map(|o| self.ranges.get(o)) {
            used += other
                .alloc
                .iter_between(range.span.first, range.span.last)
                .filter(|(at, slot)| {
                    matches!(slot, Slot::Held { .. }) && matches!(range.alloc.get(*at), None | Some(Slot::Elsewhere))
                })
                .count();
        }
        Count::from(used)
    }

    pub(super) fn refresh_pool_status(&mut self, name: &str) {
        let Some(counts) = self.pool_counts(name) else { return };
        let Some(pool) = self.pools.get_mut(name) else { return };
        self.touched.pool(name, &pool.status);
        let generation = pool.generation;
        let wanted = [
            conditions::conflict(pool.conflict.as_deref(), generation),
            conditions::count(IPS_TOTAL, counts.total, generation),
            conditions::count(IPS_AVAILABLE, counts.available, generation),
            conditions::count(IPS_USED, counts.used, generation),
        ];
        for condition in wanted {
            Condition::set(&mut pool.status.conditions, condition, &self.now);
        }
        if pool.problems.is_empty() {
            conditions::remove(&mut pool.status.conditions, POOL_INVALID);
        } else {
            Condition::set(&mut pool.status.conditions, conditions::invalid(&pool.problems, generation), &self.now);
        }
    }
}
