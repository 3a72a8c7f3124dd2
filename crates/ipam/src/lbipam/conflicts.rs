//! Overlapping pools (spec §5.8).
//!
//! Two ranges overlap when they share an address (inclusive ends, same family). Going through the
//! pools oldest first (creation time, then name):
//! - a pool whose own ranges overlap is conflicting, against itself;
//! - a pool overlapping an older pool that is not conflicting is conflicting, against that pool;
//! - any other pool is not.
//!
//! A conflicting pool hands out nothing new (all its ranges, overlapping or not), but its existing
//! allocations stay. The outcome is a function of the current pools alone: Cilium breaks equal
//! creation times by map order (random) and keeps a pool marked until it overlaps nothing at all,
//! so its result depends on history; here the older pool always wins, equal times go to the name
//! that sorts first, and a restart reproduces the same marks.

use super::LbIpam;
use super::lbrange::RangeId;
use crate::addr::IpRange;

fn message(own: &IpRange, other: &IpRange, other_pool: &str) -> String {
    format!("Pool conflicts since range '{own}' overlaps range '{other}' from IP Pool '{other_pool}'")
}

impl LbIpam {
    pub(super) fn settle_conflicts(&mut self) {
        self.find_overlaps();
        // Counts include addresses held through overlapping ranges, which may have changed.
        self.dirty_pools.extend(self.pools.keys().cloned());

        let mut order: Vec<_> = self.pools.values().map(|p| p.order()).collect();
        order.sort();
        let mut winners: Vec<String> = Vec::new();
        for (_, name) in order {
            let conflict = self.internal_conflict(&name).or_else(|| self.conflict_with(&name, &winners));
            if conflict.is_none() {
                winners.push(name.clone());
            }
            if let Some(pool) = self.pools.get_mut(&name)
                && pool.conflict != conflict
            {
                pool.conflict = conflict;
                self.dirty_pools.insert(name);
                self.epoch += 1;
            }
        }
    }

    /// Recomputes every range's list of overlapping ranges: sort by start, and compare each range
    /// only with the ranges starting before it ends.
    fn find_overlaps(&mut self) {
        let mut spans: Vec<(IpRange, RangeId)> = self.ranges.iter().map(|(id, r)| (r.span, *id)).collect();
        spans.sort();
        for range in self.ranges.values_mut() {
            range.overlaps.clear();
        }
        for (i, (a, a_id)) in spans.iter().enumerate() {
            for (b, b_id) in &spans[i + 1..] {
                if b.family != a.family || b.first > a.last {
                    break;
                }
                if let Some(r) = self.ranges.get_mut(a_id) {
                    r.overlaps.push(*b_id);
                }
                if let Some(r) = self.ranges.get_mut(b_id) {
                    r.overlaps.push(*a_id);
                }
            }
        }
    }

    fn spans(&self, pool: &str) -> Vec<(RangeId, IpRange)> {
        self.pools
            .get(pool)
            .map(|p| p.ranges.iter().filter_map(|id| self.ranges.get(id).map(|r| (*id, r.span))).collect())
            .unwrap_or_default()
    }

    /// The first pair of the pool's own blocks, in spec order, that overlap.
    fn internal_conflict(&self, pool: &str) -> Option<String> {
        let spans = self.spans(pool);
        spans.iter().enumerate().find_map(|(i, (_, a))| {
            spans[i + 1..].iter().find(|(_, b)| a.overlaps(b)).map(|(_, b)| message(a, b, pool))
        })
    }

    /// The first overlap with an older, non-conflicting pool: winners oldest first, then blocks in
    /// spec order.
    fn conflict_with(&self, pool: &str, winners: &[String]) -> Option<String> {
        let spans = self.spans(pool);
        // Most pools overlap nothing: check the precomputed lists before pairing blocks up.
        let overlaps_any = spans.iter().any(|(id, _)| self.ranges.get(id).is_some_and(|r| !r.overlaps.is_empty()));
        if !overlaps_any {
            return None;
        }
        winners.iter().find_map(|winner| {
            self.spans(winner).iter().find_map(|(_, theirs)| {
                spans.iter().find(|(_, own)| own.overlaps(theirs)).map(|(_, own)| message(own, theirs, winner))
            })
        })
    }
}
