//! Who holds which address: taking and releasing addresses, and stripping allocations a Service may
//! no longer hold (spec §5.1 step 2).
//!
//! Invariants (checked by `check_consistency`):
//! - an address is held through at most one range, even where ranges overlap;
//! - a Service's `allocated` list and the holders recorded in the ranges agree;
//! - all holders of an address are pairwise compatible and carry the address's sharing key;
//! - the sharing index lists an address under a key exactly while it is held under that key.

use std::net::IpAddr;

use super::LbIpam;
use super::lbrange::{RangeId, Slot};
use super::service::{Allocation, ServiceKey, ServiceView};
use super::sharing;
use crate::addr;

impl LbIpam {
    /// The range through which some Service holds `ip`.
    pub(super) fn holder_range(&self, ip: IpAddr) -> Option<RangeId> {
        self.range_order.iter().copied().find(|id| self.ranges.get(id).is_some_and(|r| r.holders(ip).is_some()))
    }

    /// Why `view` may not share `ip` with its current holders in `range`, if it may not.
    pub(super) fn incompatible_holder(&self, view: &ServiceView, range: RangeId, ip: IpAddr) -> Option<&'static str> {
        let (_, holders) = self.ranges.get(&range)?.holders(ip)?;
        holders
            .iter()
            .filter(|h| **h != view.key)
            .filter_map(|h| self.services.get(h))
            .find_map(|other| sharing::incompatibility(&view.sharing, &other.sharing))
    }

    /// Whether some range containing `ip` belongs to a pool that selects the Service. Decisions
    /// about an address already in use ask this rather than looking at the range it is held
    /// through: where pools overlap, that range depends on history (which pool handed it out
    /// first), and a restart must reach the same decisions.
    pub(super) fn selectable(&self, ip: IpAddr, view: &ServiceView) -> bool {
        self.range_order
            .iter()
            .any(|&id| self.ranges.get(&id).is_some_and(|r| r.span.contains(ip)) && self.selects(id, view))
    }

    /// Whether some enabled range containing `ip` belongs to a pool that selects the Service.
    pub(super) fn usable(&self, ip: IpAddr, view: &ServiceView) -> bool {
        self.range_order.iter().any(|&id| {
            self.ranges.get(&id).is_some_and(|r| r.span.contains(ip)) && self.is_enabled(id) && self.selects(id, view)
        })
    }

    /// Whether the pool of `range` selects the Service.
    pub(super) fn selects(&self, range: RangeId, view: &ServiceView) -> bool {
        self.ranges.get(&range).and_then(|r| self.pools.get(&r.pool)).is_some_and(|p| p.selector.matches(view))
    }

    /// Whether `range` may hand out new addresses: its pool is neither disabled nor conflicting.
    pub(super) fn is_enabled(&self, range: RangeId) -> bool {
        self.ranges.get(&range).and_then(|r| self.pools.get(&r.pool)).is_some_and(|p| p.is_enabled())
    }

    /// Makes `view` a holder of `ip` in `range`: joins the current holders, or takes the address
    /// (over a reservation, when importing an address a Service already had).
    pub(super) fn hold(&mut self, view: &mut ServiceView, range_id: RangeId, ip: IpAddr) {
        let Some(range) = self.ranges.get_mut(&range_id) else { return };
        let at = addr::to_u128(ip);
        let fresh = match range.alloc.get_mut(at) {
            Some(Slot::Held { services, .. }) => {
                services.push(view.key.clone());
                false
            }
            Some(slot) => {
                if *slot == Slot::Elsewhere {
                    range.shadowed = range.shadowed.saturating_sub(1);
                }
                *slot = Slot::Held { key: view.sharing.key.clone(), services: vec![view.key.clone()] };
                true
            }
            None => {
                let slot = Slot::Held { key: view.sharing.key.clone(), services: vec![view.key.clone()] };
                if range.alloc.alloc(at, slot).is_err() {
                    return;
                }
                true
            }
        };
        if fresh && let Some(key) = &view.sharing.key {
            self.sharing.add(key, ip, range_id);
            // A waiting Service with the same key may join it.
            self.epoch += 1;
        }
        view.allocated.push(Allocation { ip, range: range_id });
        self.mark_dirty(range_id);
    }

    /// Removes `key` from the holders of an allocation; the last holder leaving frees the address.
    /// The caller removes the allocation from the Service's list.
    pub(super) fn release(&mut self, key: &ServiceKey, allocation: Allocation) {
        let Allocation { ip, range: range_id } = allocation;
        let Some(range) = self.ranges.get_mut(&range_id) else { return };
        let mut freed = None;
        if let Some(Slot::Held { key: sharing_key, services }) = range.slot_mut(ip) {
            services.retain(|s| s != key);
            if services.is_empty() {
                freed = Some(sharing_key.clone());
            }
        }
        // Freed, or a sharing group lost a member a waiting Service may have clashed with.
        self.epoch += 1;
        if let Some(sharing_key) = freed {
            range.release(ip);
            if let Some(k) = sharing_key {
                self.sharing.remove(&k, ip, range_id);
            }
            self.clear_shadows(range_id, ip);
        }
        self.mark_dirty(range_id);
    }

    /// The counts of the range's pool, and of pools overlapping it, need refreshing.
    fn mark_dirty(&mut self, range: RangeId) {
        let Some(r) = self.ranges.get(&range) else { return };
        self.dirty_pools.insert(r.pool.clone());
        for other in r.overlaps.iter().filter_map(|o| self.ranges.get(o)) {
            self.dirty_pools.insert(other.pool.clone());
        }
    }

    /// `ip` is no longer held through `range`: overlapping ranges may hand it out again.
    pub(super) fn clear_shadows(&mut self, range: RangeId, ip: IpAddr) {
        let overlaps = self.ranges.get(&range).map(|r| r.overlaps.clone()).unwrap_or_default();
        for other in overlaps {
            if let Some(r) = self.ranges.get_mut(&other)
                && r.slot(ip) == Some(&Slot::Elsewhere)
            {
                r.release(ip);
            }
        }
    }

    /// Step 2: releases every allocation whose pool is gone or no longer selects the Service, that
    /// is no longer requested, or whose co-holders the Service is no longer compatible with.
    /// Disabled and conflicting pools are not a reason: existing allocations stay.
    ///
    /// Compatibility is judged per address, where Cilium releases all of a Service's addresses when
    /// any one sharing group rejects it.
    pub(super) fn strip_invalid_allocations(&mut self, view: &mut ServiceView) {
        let mut i = view.allocated.len();
        while i > 0 {
            i -= 1;
            let allocation = view.allocated[i];
            let keep = self.selectable(allocation.ip, view)
                && view.wants(allocation.ip)
                && self.incompatible_holder(view, allocation.range, allocation.ip).is_none();
            if keep {
                self.adopt_sharing_key(view, allocation);
            } else {
                view.allocated.remove(i);
                self.release(&view.key, allocation);
            }
        }
    }

    /// A sole holder whose sharing key changed keeps its address, now under the new key.
    fn adopt_sharing_key(&mut self, view: &ServiceView, allocation: Allocation) {
        let Some(range) = self.ranges.get_mut(&allocation.range) else { return };
        let Some(Slot::Held { key, services }) = range.slot_mut(allocation.ip) else { return };
        if *key == view.sharing.key || services.as_slice() != [view.key.clone()] {
            return;
        }
        let old = std::mem::replace(key, view.sharing.key.clone());
        if let Some(old) = old {
            self.sharing.remove(&old, allocation.ip, allocation.range);
        }
        if let Some(new) = &view.sharing.key {
            self.sharing.add(new, allocation.ip, allocation.range);
            self.epoch += 1;
        }
    }
}
