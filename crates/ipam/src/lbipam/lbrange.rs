//! One range of a pool (one block of its spec) and what each allocated address in it is used for.

use std::net::IpAddr;

use super::service::ServiceKey;
use crate::addr::{self, IpRange};
use crate::range::RangeAllocator;

/// Ranges are numbered in creation order; a range keeps its id, and so its allocations, for as long
/// as its pool's spec lists the same block.
pub type RangeId = u64;

/// What an allocated address is used for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The first or last address of a CIDR block with `allowFirstLastIPs: No`.
    Reserved,
    /// Held through another, overlapping range (pools only overlap while one of them is marked
    /// conflicting). Marked here so this range never hands the address out a second time. Not
    /// counted as used: the other range counts it.
    Elsewhere,
    /// Held by these Services (more than one when they share it), all with the same sharing key.
    Held { key: Option<String>, services: Vec<ServiceKey> },
}

#[derive(Clone, Debug)]
pub struct LbRange {
    pub pool: String,
    pub span: IpRange,
    /// First and last address are reserved (CIDR block, `allowFirstLastIPs: No`, 3+ addresses).
    pub reserve_edges: bool,
    pub alloc: RangeAllocator<Slot>,
    /// Other ranges sharing addresses with this one.
    pub overlaps: Vec<RangeId>,
    /// Number of `Slot::Elsewhere` entries.
    pub shadowed: usize,
}

impl LbRange {
    pub fn new(pool: &str, span: IpRange, reserve_edges: bool) -> Self {
        let mut range = LbRange {
            pool: pool.to_string(),
            span,
            reserve_edges: false,
            alloc: RangeAllocator::new(span.first, span.last),
            overlaps: Vec::new(),
            shadowed: 0,
        };
        range.set_reserve_edges(reserve_edges);
        range
    }

    /// Reserves the first and last address where they are free, or releases the reservations. An
    /// address a Service already holds stays with it either way (Cilium frees it under the Service
    /// when the reservation is lifted; here only reservations are released).
    pub fn set_reserve_edges(&mut self, reserve: bool) {
        self.reserve_edges = reserve;
        for edge in [self.span.first, self.span.last] {
            match (reserve, self.alloc.get(edge)) {
                (true, None) => {
                    let _ = self.alloc.alloc(edge, Slot::Reserved);
                }
                (false, Some(Slot::Reserved)) => {
                    self.alloc.free(edge);
                }
                _ => {}
            }
        }
    }

    pub fn is_edge(&self, at: u128) -> bool {
        at == self.span.first || at == self.span.last
    }

    pub fn slot(&self, ip: IpAddr) -> Option<&Slot> {
        if !self.span.contains(ip) {
            return None;
        }
        self.alloc.get(addr::to_u128(ip))
    }

    pub fn slot_mut(&mut self, ip: IpAddr) -> Option<&mut Slot> {
        if !self.span.contains(ip) {
            return None;
        }
        self.alloc.get_mut(addr::to_u128(ip))
    }

    /// The Services holding `ip` through this range.
    pub fn holders(&self, ip: IpAddr) -> Option<(&Option<String>, &[ServiceKey])> {
        match self.slot(ip) {
            Some(Slot::Held { key, services }) => Some((key, services)),
            _ => None,
        }
    }

    /// Frees an address no Service holds any more; an edge address goes back to being reserved.
    pub fn release(&mut self, ip: IpAddr) {
        let at = addr::to_u128(ip);
        if let Some(Slot::Elsewhere) = self.alloc.free(at) {
            self.shadowed = self.shadowed.saturating_sub(1);
        }
        if self.reserve_edges && self.is_edge(at) {
            let _ = self.alloc.alloc(at, Slot::Reserved);
        }
    }

    /// Addresses held or reserved through this range itself.
    pub fn used_here(&self) -> usize {
        self.alloc.used().saturating_sub(self.shadowed)
    }
}
