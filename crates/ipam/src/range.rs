//! An allocator over one inclusive range of addresses (as `u128`).
//!
//! State is proportional to what is allocated, never to the size of the range: allocated addresses
//! live in a sorted map (address → value), and the free space is a set of maximal free intervals
//! ("free blocks") indexed twice, by start (to find the block holding an address and to merge
//! neighbours) and by (size, start) (to find the smallest block). Every operation is `O(log n)` in
//! the number of allocated addresses and free blocks.
//!
//! **Allocation order** (`alloc_any`): the lowest address of the smallest free block, as Cilium's
//! `ipalloc`. A fresh range hands out addresses upwards from its first address, and a freed address,
//! being a small hole, is reused before the untouched tail, which keeps the free space in few large
//! blocks. Cilium leaves ties between equal-sized blocks to heap order; here the lower block wins, so
//! the order is a pure function of the set of allocated addresses.

use std::collections::{BTreeMap, BTreeSet};

use crate::count::Count;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("address is outside the range")]
    OutOfRange,
    #[error("address is already allocated")]
    InUse,
    #[error("no free address left in the range")]
    Full,
}

#[derive(Clone, Debug)]
pub struct RangeAllocator<T> {
    first: u128,
    last: u128,
    used: BTreeMap<u128, T>,
    /// Free block start → end (inclusive). Blocks never touch: neighbours are merged.
    free: BTreeMap<u128, u128>,
    /// The same blocks as (end - start, start), so the first element is the smallest, lowest block.
    by_size: BTreeSet<(u128, u128)>,
}

impl<T> RangeAllocator<T> {
    /// An allocator for `first..=last`. With `first > last` it holds nothing and every request fails.
    pub fn new(first: u128, last: u128) -> Self {
        let mut alloc =
            RangeAllocator { first, last, used: BTreeMap::new(), free: BTreeMap::new(), by_size: BTreeSet::new() };
        if first <= last {
            alloc.insert_block(first, last);
        }
        alloc
    }

    pub fn first(&self) -> u128 {
        self.first
    }

    pub fn last(&self) -> u128 {
        self.last
    }

    pub fn contains(&self, at: u128) -> bool {
        self.first <= at && at <= self.last
    }

    /// The address [`alloc_any`](Self::alloc_any) would hand out next.
    pub fn peek_any(&self) -> Option<u128> {
        self.by_size.first().map(|&(_, start)| start)
    }

    /// Allocates the lowest address of the smallest free block.
    pub fn alloc_any(&mut self, value: T) -> Result<u128, AllocError> {
        let at = self.peek_any().ok_or(AllocError::Full)?;
        self.alloc(at, value)?;
        Ok(at)
    }

    /// Allocates `at`.
    pub fn alloc(&mut self, at: u128, value: T) -> Result<(), AllocError> {
        if !self.contains(at) {
            return Err(AllocError::OutOfRange);
        }
        if self.used.contains_key(&at) {
            return Err(AllocError::InUse);
        }
        // Not used and inside the range, so some free block holds it.
        let (start, end) = match self.free.range(..=at).next_back() {
            Some((&start, &end)) if end >= at => (start, end),
            _ => return Err(AllocError::Full),
        };
        self.remove_block(start, end);
        if start < at {
            self.insert_block(start, at - 1);
        }
        if at < end {
            self.insert_block(at + 1, end);
        }
        self.used.insert(at, value);
        Ok(())
    }

    /// Frees `at`, returning its value, and merges the free blocks on either side.
    pub fn free(&mut self, at: u128) -> Option<T> {
        let value = self.used.remove(&at)?;
        let mut start = at;
        let mut end = at;
        if at > self.first
            && let Some((&left, &left_end)) = self.free.range(..at).next_back()
            && left_end == at - 1
        {
            self.remove_block(left, left_end);
            start = left;
        }
        if at < self.last
            && let Some(&right_end) = self.free.get(&(at + 1))
        {
            self.remove_block(at + 1, right_end);
            end = right_end;
        }
        self.insert_block(start, end);
        Some(value)
    }

    pub fn get(&self, at: u128) -> Option<&T> {
        self.used.get(&at)
    }

    pub fn get_mut(&mut self, at: u128) -> Option<&mut T> {
        self.used.get_mut(&at)
    }

    /// Allocated addresses in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (u128, &T)> {
        self.used.iter().map(|(&at, v)| (at, v))
    }

    /// Allocated addresses from `lo` to `hi` inclusive, ascending.
    pub fn iter_between(&self, lo: u128, hi: u128) -> impl Iterator<Item = (u128, &T)> {
        let bounds = if lo <= hi { Some(lo..=hi) } else { None };
        bounds.into_iter().flat_map(|b| self.used.range(b)).map(|(&at, v)| (at, v))
    }

    /// Number of allocated addresses.
    pub fn used(&self) -> usize {
        self.used.len()
    }

    /// Number of addresses in the range.
    pub fn size(&self) -> Count {
        Count::span(self.first, self.last)
    }

    pub fn available(&self) -> Count {
        self.size().saturating_sub(Count::from(self.used.len()))
    }

    /// Number of free blocks: a measure of fragmentation, for tests and benchmarks.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// The free blocks in address order, as (start, end) inclusive.
    pub fn free_list(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.free.iter().map(|(&s, &e)| (s, e))
    }

    fn insert_block(&mut self, start: u128, end: u128) {
        self.free.insert(start, end);
        self.by_size.insert((end - start, start));
    }

    fn remove_block(&mut self, start: u128, end: u128) {
        self.free.remove(&start);
        self.by_size.remove(&(end - start, start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `10.0.0.0 - 10.0.0.255` as offsets of the last octet.
    fn slash24() -> RangeAllocator<()> {
        RangeAllocator::new(0, 255)
    }

    fn blocks(a: &RangeAllocator<()>) -> Vec<(u128, u128)> {
        a.free_list().collect()
    }

    // Spec §7.5 TestBlockList_Take.
    #[test]
    fn take_splits_blocks() {
        let mut a = slash24();
        a.alloc(0, ()).unwrap();
        assert_eq!(blocks(&a), [(1, 255)]);
        a.alloc(1, ()).unwrap();
        a.alloc(255, ()).unwrap();
        assert_eq!(blocks(&a), [(2, 254)]);
        a.alloc(11, ()).unwrap();
        assert_eq!(blocks(&a), [(2, 10), (12, 254)]);
        a.alloc(211, ()).unwrap();
        assert_eq!(blocks(&a), [(2, 10), (12, 210), (212, 254)]);
        // Smallest first: .2-.10 (9), .212-.254 (43), .12-.210 (199).
        let by_size: Vec<_> = a.by_size.iter().map(|&(_, s)| s).collect();
        assert_eq!(by_size, [2, 212, 12]);
        a.alloc(100, ()).unwrap();
        assert_eq!(blocks(&a), [(2, 10), (12, 99), (101, 210), (212, 254)]);
    }

    // TestBlockList_TakeLast: taking a single-address block removes it.
    #[test]
    fn take_single_address_block() {
        let mut a = slash24();
        for at in (11..20).chain(21..30) {
            a.alloc(at, ()).unwrap();
        }
        assert_eq!(blocks(&a), [(0, 10), (20, 20), (30, 255)]);
        a.alloc(20, ()).unwrap();
        assert_eq!(blocks(&a), [(0, 10), (30, 255)]);
    }

    // TestBlockList_TakeInUse, TestHashAlloc_Alloc.
    #[test]
    fn errors() {
        let mut a: RangeAllocator<()> = RangeAllocator::new(0, 100);
        a.alloc(50, ()).unwrap();
        assert_eq!(a.alloc(50, ()), Err(AllocError::InUse));
        assert_eq!(a.alloc(200, ()), Err(AllocError::OutOfRange));
        let mut one: RangeAllocator<()> = RangeAllocator::new(7, 7);
        assert_eq!(one.alloc_any(()), Ok(7));
        assert_eq!(one.alloc_any(()), Err(AllocError::Full));
        let mut empty: RangeAllocator<()> = RangeAllocator::new(9, 1);
        assert_eq!(empty.alloc_any(()), Err(AllocError::Full));
        assert_eq!(empty.size(), Count::ZERO);
    }

    // TestBlockList_Put, PutMoveRight, PutOuterMost: freeing merges neighbours.
    #[test]
    fn free_merges() {
        let mut a = slash24();
        a.alloc(100, ()).unwrap();
        assert_eq!(a.free_blocks(), 2);
        a.free(100);
        assert_eq!(blocks(&a), [(0, 255)]);
        for at in [200, 201, 202] {
            a.alloc(at, ()).unwrap();
        }
        assert_eq!(a.free_blocks(), 2);
        a.free(201);
        assert_eq!(a.free_blocks(), 3);
        a.free(200);
        assert_eq!(a.free_blocks(), 2);
        a.free(202);
        assert_eq!(blocks(&a), [(0, 255)]);

        let mut a = slash24();
        for at in [50, 51, 52] {
            a.alloc(at, ()).unwrap();
        }
        a.free(51);
        assert_eq!(blocks(&a), [(0, 49), (51, 51), (53, 255)]);

        let mut a = slash24();
        a.alloc(0, ()).unwrap();
        a.alloc(1, ()).unwrap();
        a.free(0);
        assert_eq!(blocks(&a), [(0, 0), (2, 255)]);
        a.alloc(255, ()).unwrap();
        a.alloc(254, ()).unwrap();
        a.free(255);
        assert_eq!(blocks(&a), [(0, 0), (2, 253), (255, 255)]);
        assert_eq!(a.free(77), None);
    }

    // TestBlockList_IPv6, TestHashAlloc_AllocAny, TestHashAlloc_Stats.
    #[test]
    fn any_order_and_stats() {
        let base: u128 = 0x2001_0db8 << 96;
        let mut v6: RangeAllocator<()> = RangeAllocator::new(base, base | (u128::MAX >> 32));
        v6.alloc(base + (1 << 64), ()).unwrap();
        assert_eq!(v6.free_blocks(), 2);

        let mut a: RangeAllocator<()> = RangeAllocator::new(0, 100);
        assert_eq!(a.alloc_any(()), Ok(0));
        assert_eq!(a.alloc_any(()), Ok(1));

        let mut a = slash24();
        assert_eq!((a.used(), a.available().to_string()), (0, "256".into()));
        let at = a.alloc_any(()).unwrap();
        assert_eq!((a.used(), a.available().to_string()), (1, "255".into()));
        a.free(at);
        assert_eq!((a.used(), a.available().to_string()), (0, "256".into()));
    }

    #[test]
    fn freed_holes_are_reused_first() {
        let mut a = slash24();
        for _ in 0..10 {
            a.alloc_any(()).unwrap();
        }
        a.free(5);
        assert_eq!(a.alloc_any(()), Ok(5));
        assert_eq!(a.alloc_any(()), Ok(10));
        // Two holes of equal size: the lower one first.
        a.free(7);
        a.free(3);
        assert_eq!(a.alloc_any(()), Ok(3));
        assert_eq!(a.alloc_any(()), Ok(7));
    }

    proptest::proptest! {
        /// Against a plain set: the same addresses are allocated, the free blocks are exactly the
        /// gaps, and `alloc_any` picks the lowest address of the smallest gap.
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec((0u8..3, 0u128..40), 1..200)) {
            let mut a: RangeAllocator<()> = RangeAllocator::new(0, 31);
            let mut model = std::collections::BTreeSet::new();
            for (kind, at) in ops {
                let gaps: Vec<(u128, u128)> = {
                    let mut gaps = Vec::new();
                    let mut start = None;
                    for x in 0..=32u128 {
                        let free = x < 32 && !model.contains(&x);
                        match (free, start) {
                            (true, None) => start = Some(x),
                            (false, Some(s)) => { gaps.push((s, x - 1)); start = None; }
                            _ => {}
                        }
                    }
                    gaps
                };
                proptest::prop_assert_eq!(a.free_list().collect::<Vec<_>>(), gaps.clone());
                match kind {
                    0 => {
                        let want = gaps.iter().min_by_key(|(s, e)| (e - s, *s)).map(|(s, _)| *s);
                        let got = a.alloc_any(()).ok();
                        proptest::prop_assert_eq!(got, want);
                        if let Some(x) = want { model.insert(x); }
                    }
                    1 => {
                        let want = if at > 31 { Err(AllocError::OutOfRange) } else if model.contains(&at) { Err(AllocError::InUse) } else { Ok(()) };
                        proptest::prop_assert_eq!(a.alloc(at, ()), want);
                        if want.is_ok() { model.insert(at); }
                    }
                    _ => {
                        proptest::prop_assert_eq!(a.free(at).is_some(), model.remove(&at));
                    }
                }
                proptest::prop_assert_eq!(a.used(), model.len());
            }
        }
    }

    #[test]
    fn huge_ranges_cost_nothing_up_front() {
        let mut a: RangeAllocator<()> = RangeAllocator::new(0, u128::MAX);
        assert_eq!(a.size().to_string(), "340282366920938463463374607431768211456");
        assert_eq!(a.alloc(u128::MAX, ()), Ok(()));
        assert_eq!(a.alloc_any(()), Ok(0));
        assert_eq!(a.free(u128::MAX), Some(()));
        assert_eq!(a.free(0), Some(()));
        assert_eq!(blocks(&a), [(0, u128::MAX)]);
    }
}
