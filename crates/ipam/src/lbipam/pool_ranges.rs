//! Turning a pool's spec into ranges, and keeping them in step with spec changes (spec §5.7).
//!
//! A range is identified by its exact (first, last). A block that stays in the spec keeps its range
//! and so its allocations; a block that disappears takes its allocations with it (the Services then
//! re-import their addresses from whatever range now contains them, or get new ones); a new block
//! gets a new range. Widening a CIDR therefore replaces the range, and the two-phase revalidation
//! keeps every address that the new range still contains.

use api::types::LbIpPool;

use super::LbIpam;
use super::lbrange::{LbRange, RangeId, Slot};
use super::pool::{self, Pool, PoolSelector, parse_blocks};
use crate::addr;

impl LbIpam {
    /// Records the pool. Returns whether anything that affects allocation changed (it is new, or its
    /// spec or creation time changed); status-only updates return false.
    pub(super) fn apply_pool(&mut self, object: &LbIpPool) -> bool {
        let name = object.metadata.name.clone();
        let created = pool::created(object);
        let changed = self.pools.get(&name).is_none_or(|p| p.spec != object.spec || p.created != created);
        self.touched.pool(&name, &object.status);
        self.dirty_pools.insert(name.clone());
        let pool = self.pools.entry(name.clone()).or_insert_with(|| Pool::new(object));
        pool.status = object.status.clone();
        pool.generation = object.metadata.generation;
        pool.created = created;
        if !changed {
            return false;
        }

        pool.spec = object.spec.clone();
        let (selector, selector_problem) = PoolSelector::parse(&object.spec);
        pool.selector = selector;
        let (blocks, mut problems) = parse_blocks(&object.spec);
        problems.extend(selector_problem);
        pool.problems = problems;

        let mut unused = std::mem::take(&mut pool.ranges);
        let mut ranges = Vec::with_capacity(blocks.len());
        for block in blocks {
            let same = unused.iter().position(|id| self.ranges.get(id).is_some_and(|r| r.span == block.span));
            let id = match same {
                Some(pos) => {
                    let id = unused.remove(pos);
                    if let Some(range) = self.ranges.get_mut(&id)
                        && range.reserve_edges != block.reserve_edges
                    {
                        range.set_reserve_edges(block.reserve_edges);
                    }
                    id
                }
                None => {
                    let id = self.next_range;
                    self.next_range += 1;
                    self.ranges.insert(id, LbRange::new(&name, block.span, block.reserve_edges));
                    id
                }
            };
            ranges.push(id);
        }
        pool.ranges = ranges;
        for id in unused {
            self.remove_range(id);
        }
        self.rebuild_range_order();
        self.epoch += 1;
        true
    }

    /// Deletes a range. Its Services lose the allocations (their ingress still shows the addresses,
    /// which the next revalidation re-imports or drops).
    pub(super) fn remove_range(&mut self, id: RangeId) {
        let Some(range) = self.ranges.remove(&id) else { return };
        for (at, slot) in range.alloc.iter() {
            let Slot::Held { key, services } = slot else { continue };
            let ip = addr::from_u128(range.span.family, at);
            for holder in services {
                if let Some(view) = self.services.get_mut(holder) {
                    view.allocated.retain(|a| a.range != id);
                }
            }
            if let Some(key) = key {
                self.sharing.remove(key, ip, id);
            }
            for other in &range.overlaps {
                if let Some(r) = self.ranges.get_mut(other)
                    && r.slot(ip) == Some(&Slot::Elsewhere)
                {
                    r.release(ip);
                }
            }
        }
        for other in &range.overlaps {
            if let Some(r) = self.ranges.get_mut(other) {
                r.overlaps.retain(|o| *o != id);
                // Its count included what was held through the removed range.
                self.dirty_pools.insert(r.pool.clone());
            }
        }
        self.dirty_pools.insert(range.pool);
        self.epoch += 1;
    }

    /// Pools oldest first (creation time, then name), each pool's blocks in spec order. Unlike
    /// Cilium (insertion order in v1.18, random on main), the order depends only on the pools, not
    /// on the order events arrived in, so it is the same after a restart.
    pub(super) fn rebuild_range_order(&mut self) {
        let mut pools: Vec<&Pool> = self.pools.values().collect();
        pools.sort_by_key(|p| p.order());
        self.range_order = pools.iter().flat_map(|p| p.ranges.iter().copied()).collect();
    }
}
