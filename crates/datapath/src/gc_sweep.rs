//! One garbage collection sweep of the flow state, done in slices: the conntrack map first
//! (expired entries go), then the SNAT map (entries of flows whose conntrack entry is gone go, see
//! [`crate::nat_gc`]). A full conntrack map holds 256k entries; walked in one go it would hold the
//! datapath's thread (and everything queued behind it, such as a new pod's programs) for as long
//! as the walk takes. Each slice reads the maps in batches (`BPF_MAP_LOOKUP_BATCH`) and stops once
//! its time budget is spent; the sweep remembers where it stands, and the next slice goes on from
//! there.
//!
//! The walk of the conntrack map also collects the live flows the SNAT phase keeps entries for,
//! so a sweep reads each map once. This file is the sweep's state and its decisions per batch;
//! the map reads and deletes are [`crate::maps::PinnedMaps::gc_slice`]'s.

use std::collections::HashSet;

use crate::abi::{self, Ct4Key, CtEntry, NatEntry};
use crate::datapath::GcStats;
use crate::nat_gc;
use crate::sys::BatchCursor;

/// Entries read per batch system call: big enough that the system calls cost little per entry,
/// small enough that a batch takes well under a millisecond.
pub const GC_BATCH: usize = 1024;

/// Where a sweep stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Conntrack(BatchCursor),
    Nat(BatchCursor),
    Done,
}

/// A garbage collection sweep at one moment of the datapath's clock. Pass it to
/// [`crate::LbDatapath::gc_slice`] until [`GcSweep::is_done`].
#[derive(Debug)]
pub struct GcSweep {
    pub(crate) now_ns: u64,
    pub(crate) phase: Phase,
    with_nat: bool,
    /// `CT_EGRESS` keys of live flows seen by the conntrack walk.
    live: HashSet<Ct4Key>,
    stats: GcStats,
    slices: usize,
}

impl GcSweep {
    /// A sweep of both maps, with entries expired at `now_ns` (the datapath's clock,
    /// [`crate::maps::monotonic_ns`]).
    pub fn new(now_ns: u64) -> Self {
        GcSweep {
            now_ns,
            phase: Phase::Conntrack(BatchCursor::default()),
            with_nat: true,
            live: HashSet::new(),
            stats: GcStats::default(),
            slices: 0,
        }
    }

    /// A sweep of the conntrack map alone.
    pub fn conntrack_only(now_ns: u64) -> Self {
        GcSweep { with_nat: false, ..Self::new(now_ns) }
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// What the sweep removed so far (and, once done, how many SNAT entries are left).
    pub fn stats(&self) -> GcStats {
        self.stats
    }

    /// Slices run so far.
    pub fn slices(&self) -> usize {
        self.slices
    }

    /// Ends the sweep with what a datapath that sweeps in one go reported.
    pub fn finish_with(&mut self, stats: GcStats) {
        self.stats = stats;
        self.phase = Phase::Done;
        self.slices += 1;
    }

    pub(crate) fn slice_started(&mut self) {
        self.slices += 1;
    }

    /// One batch of the conntrack walk: remembers the live flows and returns the keys of expired
    /// entries (each is read again before it is deleted). `next` is where the walk goes on, `None`
    /// at its end.
    pub(crate) fn conntrack_batch(&mut self, batch: &[(Ct4Key, CtEntry)], next: Option<BatchCursor>) -> Vec<Ct4Key> {
        let mut expired = Vec::new();
        for (k, e) in batch {
            if e.expires_ns < self.now_ns {
                expired.push(*k);
            } else if k.dir == abi::CT_EGRESS && self.with_nat {
                self.live.insert(*k);
            }
        }
        self.phase = match next {
            Some(cursor) => Phase::Conntrack(cursor),
            None if self.with_nat => Phase::Nat(BatchCursor::default()),
            None => Phase::Done,
        };
        expired
    }

    pub(crate) fn conntrack_removed(&mut self, n: usize) {
        self.stats.conntrack_removed += n;
    }

    /// One batch of the SNAT walk: returns the entries to remove with their flow's conntrack key
    /// (each pair is checked again before the delete).
    pub(crate) fn nat_batch(
        &mut self,
        batch: &[(Ct4Key, NatEntry)],
        next: Option<BatchCursor>,
    ) -> Vec<(Ct4Key, Ct4Key)> {
        self.stats.nat_entries += batch.len();
        self.phase = match next {
            Some(cursor) => Phase::Nat(cursor),
            None => Phase::Done,
        };
        nat_gc::plan(batch, &self.live, self.now_ns)
    }

    pub(crate) fn nat_removed(&mut self, n: usize) {
        self.stats.nat_removed += n;
        self.stats.nat_entries = self.stats.nat_entries.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::NatFlags;

    const SEC: u64 = 1_000_000_000;
    const CLIENT: [u8; 4] = [192, 168, 10, 1];
    const BACKEND: [u8; 4] = [172, 20, 1, 10];
    const NODE: [u8; 4] = [192, 168, 10, 100];

    fn ct(cport: u16, dir: u8, expires_ns: u64) -> (Ct4Key, CtEntry) {
        (Ct4Key::new(CLIENT.into(), cport, BACKEND.into(), 80, 6, dir), CtEntry { expires_ns, ..Default::default() })
    }

    fn nat_out(cport: u16, natport: u16, last_seen_ns: u64) -> (Ct4Key, NatEntry) {
        (
            Ct4Key::new(CLIENT.into(), cport, BACKEND.into(), 80, 6, abi::NAT_EGRESS),
            NatEntry { last_seen_ns, to_addr: NODE, to_port: natport.to_be(), flags: NatFlags::empty() },
        )
    }

    #[test]
    fn the_conntrack_walk_picks_expired_entries_and_remembers_live_flows_for_the_snat_walk() {
        let now = 100 * SEC;
        let mut sweep = GcSweep::new(now);
        let first = [ct(40000, abi::CT_EGRESS, now + SEC), ct(40001, abi::CT_EGRESS, now - 1)];
        let expired = sweep.conntrack_batch(&first, Some(BatchCursor::default()));
        assert_eq!(expired, [first[1].0]);
        assert!(matches!(sweep.phase, Phase::Conntrack(_)), "more batches to come");
        let second = [ct(40002, abi::CT_SERVICE, now - 1)];
        assert_eq!(sweep.conntrack_batch(&second, None), [second[0].0]);
        sweep.conntrack_removed(2);
        assert!(matches!(sweep.phase, Phase::Nat(_)), "the SNAT walk follows");

        // The live flow's SNAT entry stays; the expired one's goes.
        let nat = [nat_out(40000, 61000, 0), nat_out(40001, 61001, 0)];
        let planned = sweep.nat_batch(&nat, None);
        assert_eq!(planned.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [nat[1].0]);
        sweep.nat_removed(planned.len());
        assert!(sweep.is_done());
        assert_eq!(sweep.stats(), GcStats { conntrack_removed: 2, nat_removed: 1, nat_entries: 1 });
    }

    #[test]
    fn a_conntrack_only_sweep_ends_with_the_conntrack_walk() {
        let mut sweep = GcSweep::conntrack_only(10 * SEC);
        assert!(sweep.conntrack_batch(&[ct(1, abi::CT_EGRESS, 20 * SEC)], None).is_empty());
        assert!(sweep.is_done());
        assert!(sweep.live.is_empty(), "no SNAT walk needs them");
    }
}
