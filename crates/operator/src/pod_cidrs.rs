//! Cluster-pool IPAM: carves per-node pod CIDRs (`/mask`) out of the configured pool CIDRs, as
//! Cilium's operator does in `cluster-pool` mode (`clusterPoolIPv4PodCIDRList`,
//! `clusterPoolIPv4MaskSize`).
//!
//! Allocation is first-fit: the lowest free subnet of the first pool that has one. A cluster
//! brought up in one go therefore numbers its nodes 0, 1, 2, ... in the order they are allocated,
//! and a subnet freed by a deleted node goes to the next node that needs one. Claims of CIDRs that
//! do not fit the pool (another size, or outside every pool: written under an older
//! configuration) are honoured too: nothing that overlaps them is handed out.
//!
//! Pure: no datastore, no clock. The controller feeds it what the stored Nodes hold.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Longest per-node mask: a /31 or /32 would leave no address for a pod beside the router IP.
pub const MAX_MASK: u8 = 30;

/// The configuration is unusable; the operator refuses to start with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolConfigError {
    #[error("no cluster pool CIDR is configured")]
    Empty,
    #[error("cluster pool CIDR {cidr} is not a network address (did you mean {}?)", cidr.trunc())]
    NotNetworkAddress { cidr: Ipv4Net },
    #[error("cluster pool CIDRs {a} and {b} overlap")]
    Overlap { a: Ipv4Net, b: Ipv4Net },
    #[error("cluster pool mask /{mask} is shorter than pool CIDR {cidr}")]
    MaskShorterThanPool { mask: u8, cidr: Ipv4Net },
    #[error("cluster pool mask /{mask} leaves no address for pods (at most /{MAX_MASK})")]
    MaskTooLong { mask: u8 },
}

/// Why a node got no CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    #[error("no free /{mask} left in the cluster pool {} ({allocated} of {capacity} allocated)", display_pools(pools))]
    Exhausted { pools: Vec<Ipv4Net>, mask: u8, allocated: u64, capacity: u64 },
}

/// Why a CIDR found on a node cannot be recorded for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("pod CIDR {cidr} of node {node} overlaps {other}, the pod CIDR of node {owner}")]
    InUse { node: String, cidr: Ipv4Net, other: Ipv4Net, owner: String },
}

fn display_pools(pools: &[Ipv4Net]) -> String {
    pools.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Which nodes hold which CIDRs, and the pools new ones come from.
#[derive(Debug, Clone)]
pub struct PodCidrAllocator {
    pools: Vec<Ipv4Net>,
    mask: u8,
    /// Every CIDR held, by its network address: the gap scan walks this in address order.
    by_cidr: BTreeMap<Ipv4Net, String>,
    by_node: BTreeMap<String, Ipv4Net>,
}

impl PodCidrAllocator {
    /// Checks the configuration: at least one pool, network addresses only, no overlaps, and a
    /// mask that fits every pool.
    pub fn new(pools: &[Ipv4Net], mask: u8) -> Result<Self, PoolConfigError> {
        if pools.is_empty() {
            return Err(PoolConfigError::Empty);
        }
        if mask > MAX_MASK {
            return Err(PoolConfigError::MaskTooLong { mask });
        }
        for (i, a) in pools.iter().enumerate() {
            if a.trunc() != *a {
                return Err(PoolConfigError::NotNetworkAddress { cidr: *a });
            }
            if mask < a.prefix_len() {
                return Err(PoolConfigError::MaskShorterThanPool { mask, cidr: *a });
            }
            if let Some(b) = pools[..i].iter().find(|b| overlaps(a, b)) {
                return Err(PoolConfigError::Overlap { a: *b, b: *a });
            }
        }
        Ok(PodCidrAllocator { pools: pools.to_vec(), mask, by_cidr: BTreeMap::new(), by_node: BTreeMap::new() })
    }

    /// The CIDR recorded for `node`.
    pub fn get(&self, node: &str) -> Option<Ipv4Net> {
        self.by_node.get(node).copied()
    }

    /// How many /mask subnets the pools hold in all.
    pub fn capacity(&self) -> u64 {
        self.pools.iter().map(|p| 1u64 << (self.mask - p.prefix_len())).sum()
    }

    /// How many nodes hold a CIDR.
    #[cfg(test)]
    fn allocated(&self) -> usize {
        self.by_node.len()
    }

    /// Records that `node` holds `cidr` (found on its Node). Idempotent; a node that held another
    /// CIDR gives it up. Fails if the CIDR overlaps one held by another node, which then keeps it.
    pub fn claim(&mut self, node: &str, cidr: Ipv4Net) -> Result<(), ClaimError> {
        let cidr = cidr.trunc();
        if self.by_node.get(node) == Some(&cidr) {
            return Ok(());
        }
        if let Some((other, owner)) = self.by_cidr.iter().find(|(c, owner)| *owner != node && overlaps(c, &cidr)) {
            return Err(ClaimError::InUse { node: node.into(), cidr, other: *other, owner: owner.clone() });
        }
        self.release(node);
        self.by_cidr.insert(cidr, node.to_string());
        self.by_node.insert(node.to_string(), cidr);
        Ok(())
    }

    /// The CIDR of `node`: the one it holds, or the lowest free one.
    pub fn allocate(&mut self, node: &str) -> Result<Ipv4Net, AllocateError> {
        if let Some(cidr) = self.get(node) {
            return Ok(cidr);
        }
        let free = self.pools.iter().find_map(|pool| self.first_free(pool));
        let Some(cidr) = free else {
            return Err(AllocateError::Exhausted {
                pools: self.pools.clone(),
                mask: self.mask,
                allocated: self.in_pools(),
                capacity: self.capacity(),
            });
        };
        self.by_cidr.insert(cidr, node.to_string());
        self.by_node.insert(node.to_string(), cidr);
        Ok(cidr)
    }

    /// Frees the node's CIDR; returns it.
    pub fn release(&mut self, node: &str) -> Option<Ipv4Net> {
        let cidr = self.by_node.remove(node)?;
        self.by_cidr.remove(&cidr);
        Some(cidr)
    }

    /// The lowest /mask of `pool` that overlaps no held CIDR. Walks the held CIDRs in address
    /// order, moving the candidate past each one that overlaps it.
    fn first_free(&self, pool: &Ipv4Net) -> Option<Ipv4Net> {
        let step = 1u64 << (32 - self.mask);
        let pool_end = u64::from(u32::from(pool.broadcast()));
        let mut candidate = u64::from(u32::from(pool.network()));
        for held in self.by_cidr.keys() {
            let (start, end) = (u64::from(u32::from(held.network())), u64::from(u32::from(held.broadcast())));
            if end < candidate {
                continue;
            }
            if start > candidate + step - 1 {
                break;
            }
            // Overlap: the next candidate is the first aligned subnet after `held`.
            candidate = (end + 1).div_ceil(step) * step;
            if candidate > pool_end {
                return None;
            }
        }
        if candidate + step - 1 > pool_end {
            return None;
        }
        let addr = Ipv4Addr::from(u32::try_from(candidate).ok()?);
        Ipv4Net::new(addr, self.mask).ok()
    }

    /// Held CIDRs that come from the pools (for the exhaustion message).
    fn in_pools(&self) -> u64 {
        self.by_cidr.keys().filter(|c| self.pools.iter().any(|p| p.contains(*c))).count() as u64
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn guide() -> PodCidrAllocator {
        PodCidrAllocator::new(&[net("172.20.0.0/16")], 24).unwrap()
    }

    #[test]
    fn allocates_in_order_lowest_first() {
        let mut a = guide();
        assert_eq!(a.allocate("k8s-ctr").unwrap(), net("172.20.0.0/24"));
        assert_eq!(a.allocate("k8s-w1").unwrap(), net("172.20.1.0/24"));
        assert_eq!(a.allocate("k8s-w0").unwrap(), net("172.20.2.0/24"));
        // Asking again changes nothing.
        assert_eq!(a.allocate("k8s-w1").unwrap(), net("172.20.1.0/24"));
        assert_eq!(a.allocated(), 3);
        // A freed subnet is the next one handed out.
        assert_eq!(a.release("k8s-w1"), Some(net("172.20.1.0/24")));
        assert_eq!(a.allocate("k8s-w2").unwrap(), net("172.20.1.0/24"));
        assert_eq!(a.allocate("k8s-w3").unwrap(), net("172.20.3.0/24"));
    }

    #[test]
    fn restart_keeps_claimed_assignments() {
        // A restarted operator claims what the Nodes hold before allocating anything.
        let mut a = guide();
        a.claim("k8s-w0", net("172.20.2.0/24")).unwrap();
        a.claim("k8s-ctr", net("172.20.0.0/24")).unwrap();
        a.claim("k8s-ctr", net("172.20.0.0/24")).unwrap();
        assert_eq!(a.allocate("k8s-w1").unwrap(), net("172.20.1.0/24"));
        assert_eq!(a.allocate("k8s-w2").unwrap(), net("172.20.3.0/24"));
        assert_eq!(a.get("k8s-w0"), Some(net("172.20.2.0/24")));
    }

    #[test]
    fn conflicting_claims_are_refused() {
        let mut a = guide();
        a.claim("a", net("172.20.5.0/24")).unwrap();
        let err = a.claim("b", net("172.20.5.0/24")).unwrap_err();
        assert_eq!(err.to_string(), "pod CIDR 172.20.5.0/24 of node b overlaps 172.20.5.0/24, the pod CIDR of node a");
        assert_eq!(a.get("a"), Some(net("172.20.5.0/24")));
        assert_eq!(a.get("b"), None);
        // A node moving to another CIDR gives up the old one.
        a.claim("a", net("172.20.6.0/24")).unwrap();
        a.claim("b", net("172.20.5.0/24")).unwrap();
    }

    #[test]
    fn foreign_claims_are_avoided() {
        // A /23 written under an older mask covers two /24s; a CIDR outside the pool is kept too.
        let mut a = guide();
        a.claim("old", net("172.20.0.0/23")).unwrap();
        a.claim("elsewhere", net("10.1.0.0/24")).unwrap();
        assert_eq!(a.allocate("n").unwrap(), net("172.20.2.0/24"));
        a.claim("odd", net("172.20.3.128/25")).unwrap();
        assert_eq!(a.allocate("m").unwrap(), net("172.20.4.0/24"));
    }

    #[test]
    fn overlapping_pools_are_rejected() {
        let err =
            PodCidrAllocator::new(&[net("172.20.0.0/16"), net("10.0.0.0/8"), net("172.20.4.0/22")], 24).unwrap_err();
        assert_eq!(err, PoolConfigError::Overlap { a: net("172.20.0.0/16"), b: net("172.20.4.0/22") });
        assert_eq!(err.to_string(), "cluster pool CIDRs 172.20.0.0/16 and 172.20.4.0/22 overlap");
    }

    #[test]
    fn bad_configurations_are_rejected() {
        assert_eq!(PodCidrAllocator::new(&[], 24).unwrap_err(), PoolConfigError::Empty);
        let err = PodCidrAllocator::new(&[net("172.20.1.0/16")], 24).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cluster pool CIDR 172.20.1.0/16 is not a network address (did you mean 172.20.0.0/16?)"
        );
        assert_eq!(
            PodCidrAllocator::new(&[net("172.20.0.0/16")], 12).unwrap_err(),
            PoolConfigError::MaskShorterThanPool { mask: 12, cidr: net("172.20.0.0/16") }
        );
        assert_eq!(
            PodCidrAllocator::new(&[net("172.20.0.0/16")], 31).unwrap_err(),
            PoolConfigError::MaskTooLong { mask: 31 }
        );
    }

    #[test]
    fn exhaustion_is_reported_and_recovers_after_a_release() {
        let mut a = PodCidrAllocator::new(&[net("172.20.0.0/23"), net("172.21.0.0/24")], 24).unwrap();
        assert_eq!(a.capacity(), 3);
        assert_eq!(a.allocate("a").unwrap(), net("172.20.0.0/24"));
        assert_eq!(a.allocate("b").unwrap(), net("172.20.1.0/24"));
        assert_eq!(a.allocate("c").unwrap(), net("172.21.0.0/24"), "the second pool follows the first");
        let err = a.allocate("d").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free /24 left in the cluster pool 172.20.0.0/23, 172.21.0.0/24 (3 of 3 allocated)"
        );
        a.release("b");
        assert_eq!(a.allocate("d").unwrap(), net("172.20.1.0/24"));
    }

    #[test]
    fn the_top_of_the_address_space_does_not_overflow() {
        let mut a = PodCidrAllocator::new(&[net("255.255.255.0/24")], 25).unwrap();
        assert_eq!(a.allocate("a").unwrap(), net("255.255.255.0/25"));
        assert_eq!(a.allocate("b").unwrap(), net("255.255.255.128/25"));
        assert!(a.allocate("c").is_err());
    }
}
