//! Handing out addresses: specific requests (spec §5.2), generic requests (§5.3), and importing
//! addresses a Service's status already shows (§5.1 step 3).

use std::net::IpAddr;

use super::LbIpam;
use super::conditions::Unsatisfied;
use super::lbrange::{RangeId, Slot};
use super::service::{Request, ServiceView};
use crate::addr::{self, Family};

impl LbIpam {
    /// Step 4: tries to get every missing requested address. Failures do not undo successes; the last
    /// failure is what the condition reports.
    pub(super) fn satisfy(&mut self, view: &mut ServiceView) -> Option<Unsatisfied> {
        let mut failure = None;
        match view.request.clone() {
            Request::Ips(ips) => {
                let missing: Vec<IpAddr> = ips.into_iter().filter(|ip| !view.holds(*ip)).collect();
                for ip in missing {
                    if let Err(e) = self.allocate_specific(view, ip) {
                        failure = Some(e);
                    }
                }
            }
            Request::Families(families) => {
                let missing: Vec<Family> = families.iter().filter(|f| !view.holds_family(*f)).collect();
                for family in missing {
                    if let Err(e) = self.allocate_generic(view, family) {
                        failure = Some(e);
                    }
                }
            }
        }
        failure
    }

    /// §5.2: the first enabled range containing `ip` whose pool selects the Service. If the address
    /// is taken, the Service may only join its holders, with the same sharing key and compatible
    /// with each of them. A reserved first/last address is never granted, sharing key or not
    /// (Cilium v1.18 granted it to a Service with a key; main panicked, issue #48779).
    fn allocate_specific(&mut self, view: &mut ServiceView, ip: IpAddr) -> Result<(), Unsatisfied> {
        let mut contained = false;
        let mut target = None;
        for &id in &self.range_order {
            if !self.ranges.get(&id).is_some_and(|r| r.span.contains(ip)) || !self.is_enabled(id) {
                continue;
            }
            contained = true;
            if self.selects(id, view) {
                target = Some(id);
                break;
            }
        }
        let Some(target) = target else {
            return Err(if contained {
                Unsatisfied::PoolSelectorMismatch(ip)
            } else {
                Unsatisfied::NoPoolContaining(ip)
            });
        };
        if let Some(holder) = self.holder_range(ip) {
            // Joined through the range it is held through, which may be a conflicting pool's that
            // overlaps the target: the address is the same.
            if view.sharing.key.is_none() {
                return Err(Unsatisfied::AlreadyAllocated(ip));
            }
            if let Some(reason) = self.incompatible_holder(view, holder, ip) {
                return Err(Unsatisfied::Incompatible { ip, reason });
            }
            self.hold(view, holder, ip);
            return Ok(());
        }
        if self.ranges.get(&target).and_then(|r| r.slot(ip)).is_some() {
            return Err(Unsatisfied::AlreadyAllocated(ip));
        }
        self.hold(view, target, ip);
        Ok(())
    }

    /// §5.3, for one family. With a sharing key, first join the first compatible address held under
    /// that key (in the order the key's addresses were taken), then take a new address from the first
    /// enabled, selecting range with room. Joining also requires the address's pool to be enabled and
    /// to select the Service, which Cilium does not check.
    fn allocate_generic(&mut self, view: &mut ServiceView, family: Family) -> Result<(), Unsatisfied> {
        if let Some(key) = view.sharing.key.clone() {
            let shared: Vec<(IpAddr, RangeId)> = self.sharing.entries(&key).to_vec();
            for (ip, range) in shared {
                if Family::of(ip) == family
                    && self.usable(ip, view)
                    && self.incompatible_holder(view, range, ip).is_none()
                {
                    self.hold(view, range, ip);
                    return Ok(());
                }
            }
        }
        let mut tried = false;
        for i in 0..self.range_order.len() {
            let id = self.range_order[i];
            let eligible = self.ranges.get(&id).is_some_and(|r| r.span.family == family)
                && self.is_enabled(id)
                && self.selects(id, view);
            if !eligible {
                continue;
            }
            tried = true;
            if let Some(ip) = self.next_free(id) {
                self.hold(view, id, ip);
                return Ok(());
            }
        }
        Err(if tried { Unsatisfied::OutOfIps } else { Unsatisfied::NoPool })
    }

    /// The address `range` hands out next, skipping (and marking) addresses held through an
    /// overlapping range.
    fn next_free(&mut self, id: RangeId) -> Option<IpAddr> {
        loop {
            let range = self.ranges.get(&id)?;
            let ip = addr::from_u128(range.span.family, range.alloc.peek_any()?);
            let elsewhere = range.overlaps.iter().any(|o| self.ranges.get(o).is_some_and(|r| r.holders(ip).is_some()));
            if !elsewhere {
                return Some(ip);
            }
            let range = self.ranges.get_mut(&id)?;
            if range.alloc.alloc(addr::to_u128(ip), Slot::Elsewhere).is_ok() {
                range.shadowed += 1;
            }
        }
    }

    /// §5.1 step 3: re-claims an address the Service's status shows. It must still be wanted (one of
    /// the requested IPs, or of a requested family) and lie in a range of a pool that selects the
    /// Service. If another Service holds it, join when compatible (Cilium main, PR #46262), else
    /// drop it. Ranges of disabled or conflicting pools count too, preferring enabled ones: the
    /// address was handed out before, and existing allocations are kept (Cilium loses them at
    /// restart, spec §5.7 caveat).
    pub(super) fn import(&mut self, view: &mut ServiceView, ip: IpAddr) -> bool {
        if !view.wants(ip) {
            return false;
        }
        if let Some(holder) = self.holder_range(ip) {
            let joins = view.sharing.key.is_some()
                && self.selectable(ip, view)
                && self.incompatible_holder(view, holder, ip).is_none();
            if joins {
                self.hold(view, holder, ip);
            }
            return joins;
        }
        let candidates: Vec<RangeId> = self
            .range_order
            .iter()
            .copied()
            .filter(|id| self.ranges.get(id).is_some_and(|r| r.span.contains(ip)) && self.selects(*id, view))
            .collect();
        match candidates.iter().find(|id| self.is_enabled(**id)).or(candidates.first()) {
            Some(&range) => {
                self.hold(view, range, ip);
                true
            }
            None => false,
        }
    }
}
