//! Pool status: counts and the conflict and validity conditions (spec §2.3, §5.9).
//!
//! Counts sum over all of a pool's ranges, disabled and conflicting ones included. Reserved
//! first/last addresses count as used; a shared address counts once. All three count conditions
//! are written together every time (Cilium v1.18.0 skipped the others when one changed, leaving
//! "IPS AVAILABLE" blank on new pools: issues #41321, #41536).

use api::Condition;

use super::LbIpam;
use super::conditions::{self, IPS_AVAILABLE, IPS_TOTAL, IPS_USED, POOL_INVALID};
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
            .fold((Count::ZERO, Count::ZERO), |(t, u), r| (t + r.span.size(), u + r.used()));
        Some(PoolCounts { total, available: total.saturating_sub(used), used })
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
