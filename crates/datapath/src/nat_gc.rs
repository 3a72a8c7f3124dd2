//! Garbage collection of the SNAT map tied to conntrack, as Cilium's GC does it: a SNAT mapping
//! lives as long as its flow's conntrack entry. The map is an LRU, so without this the entries of
//! flows that ended stay until the LRU evicts them, and under pressure the LRU evicts the
//! least-recently-used entries, which may be live idle flows' mappings.
//!
//! A flow SNATed on this node has two SNAT entries and (among others) one conntrack entry, all on
//! the same post-DNAT tuple client:cport → backend:bport:
//!
//! - `NAT_EGRESS`  client:cport → backend:bport ⇒ node:natport
//! - `NAT_INGRESS` backend:bport → node:natport ⇒ client:cport (owns the port)
//! - `CT_EGRESS`   client:cport → backend:bport (reverse NAT of the replies)
//!
//! Once the conntrack entry is gone (expired and collected, or evicted), the flow is over: both SNAT
//! entries go. The datapath creates the conntrack entry before the SNAT entries and rewrites both in
//! place when a new flow takes an old tuple, so an entry is removed only after its conntrack entry is
//! looked up once more right before the delete, and never within [`NAT_GC_GRACE_NS`] of its last use.

use std::collections::HashSet;

use crate::abi::{self, Ct4Key, CtEntry, NatEntry};

/// A SNAT entry used this recently is kept even without a conntrack entry.
pub const NAT_GC_GRACE_NS: u64 = 5_000_000_000;

/// The conntrack key a SNAT entry's flow lives in (`CT_EGRESS` on the post-DNAT tuple), or `None`
/// for an entry of no known direction.
pub fn flow_key(key: &Ct4Key, entry: &NatEntry) -> Option<Ct4Key> {
    match key.dir {
        abi::NAT_EGRESS => Some(Ct4Key { dir: abi::CT_EGRESS, ..*key }),
        // backend:bport → node:natport ⇒ client:cport: the flow is client:cport → backend:bport
        abi::NAT_INGRESS => Some(Ct4Key {
            saddr: entry.to_addr,
            daddr: key.saddr,
            sport: entry.to_port,
            dport: key.sport,
            proto: key.proto,
            dir: abi::CT_EGRESS,
            pad: [0; 2],
        }),
        _ => None,
    }
}

/// The conntrack keys of live flows (`CT_EGRESS`, not expired at `now_ns`).
pub fn live_flows(ct: &[(Ct4Key, CtEntry)], now_ns: u64) -> HashSet<Ct4Key> {
    ct.iter().filter(|(k, e)| k.dir == abi::CT_EGRESS && e.expires_ns >= now_ns).map(|(k, _)| *k).collect()
}

/// The SNAT entries whose flow has no live conntrack entry and that were not used within the
/// grace period: candidates for removal (each is checked again before it is deleted).
pub fn plan(nat: &[(Ct4Key, NatEntry)], live: &HashSet<Ct4Key>, now_ns: u64) -> Vec<(Ct4Key, Ct4Key)> {
    nat.iter()
        .filter(|(_, e)| now_ns.saturating_sub(e.last_seen_ns) >= NAT_GC_GRACE_NS)
        .filter_map(|(k, e)| flow_key(k, e).map(|flow| (*k, flow)))
        .filter(|(_, flow)| !live.contains(flow))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::NatFlags;

    const CLIENT: [u8; 4] = [192, 168, 10, 1];
    const BACKEND: [u8; 4] = [172, 20, 1, 10];
    const NODE: [u8; 4] = [192, 168, 10, 100];
    const SEC: u64 = 1_000_000_000;

    /// A TCP key; ports in host order.
    fn key(s: [u8; 4], d: [u8; 4], sp: u16, dp: u16, dir: u8) -> Ct4Key {
        Ct4Key::new(s.into(), sp, d.into(), dp, 6, dir)
    }

    /// The two SNAT entries of one flow client:cport → backend:80 leaving as node:natport.
    fn flow(cport: u16, natport: u16, last_seen: u64) -> [(Ct4Key, NatEntry); 2] {
        [
            (
                key(CLIENT, BACKEND, cport, 80, abi::NAT_EGRESS),
                NatEntry { last_seen_ns: last_seen, to_addr: NODE, to_port: natport.to_be(), flags: NatFlags::empty() },
            ),
            (
                key(BACKEND, NODE, 80, natport, abi::NAT_INGRESS),
                NatEntry { last_seen_ns: last_seen, to_addr: CLIENT, to_port: cport.to_be(), flags: NatFlags::empty() },
            ),
        ]
    }

    fn ct(cport: u16, expires: u64) -> (Ct4Key, CtEntry) {
        (key(CLIENT, BACKEND, cport, 80, abi::CT_EGRESS), CtEntry { expires_ns: expires, ..Default::default() })
    }

    #[test]
    fn both_entries_of_a_flow_map_to_its_conntrack_key() {
        let [(ek, ee), (ik, ie)] = flow(40000, 61001, 0);
        let want = key(CLIENT, BACKEND, 40000, 80, abi::CT_EGRESS);
        assert_eq!(flow_key(&ek, &ee), Some(want));
        assert_eq!(flow_key(&ik, &ie), Some(want));
        assert_eq!(flow_key(&key(CLIENT, BACKEND, 1, 2, abi::CT_SERVICE), &ee), None);
    }

    #[test]
    fn entries_of_flows_without_live_conntrack_are_planned_for_removal() {
        let now = 100 * SEC;
        let mut nat = Vec::new();
        nat.extend(flow(40000, 61001, 10 * SEC)); // conntrack live: kept
        nat.extend(flow(40001, 61002, 10 * SEC)); // conntrack expired: removed
        nat.extend(flow(40002, 61003, 10 * SEC)); // conntrack gone: removed
        nat.extend(flow(40003, 61004, now - SEC)); // gone, but used a second ago: kept
        let ct = [ct(40000, now + 60 * SEC), ct(40001, now - SEC)];
        let live = live_flows(&ct, now);
        let planned: HashSet<u16> = plan(&nat, &live, now).iter().map(|(_, f)| u16::from_be(f.sport)).collect();
        assert_eq!(planned, HashSet::from([40001, 40002]));
        assert_eq!(plan(&nat, &live, now).len(), 4, "both directions of each");
    }
}
