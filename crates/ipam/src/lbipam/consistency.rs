//! A self-check of the controller's bookkeeping, for tests and debugging. It walks all state, so it
//! is not meant for every event in production.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::LbIpam;
use super::lbrange::{RangeId, Slot};
use super::sharing;
use crate::addr;

/// A broken invariant, described.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("LB-IPAM state is inconsistent: {0}")]
pub struct Inconsistency(pub String);

impl LbIpam {
    pub fn check_consistency(&self) -> Result<(), Inconsistency> {
        let fail = |m: String| Err(Inconsistency(m));
        let mut held_in: BTreeMap<IpAddr, RangeId> = BTreeMap::new();
        for (id, range) in &self.ranges {
            let mut shadowed = 0;
            for (at, slot) in range.alloc.iter() {
                let ip = addr::from_u128(range.span.family, at);
                match slot {
                    Slot::Reserved => {
                        if !range.is_edge(at) {
                            return fail(format!("{ip} reserved but not an edge of {}", range.span));
                        }
                    }
                    Slot::Elsewhere => {
                        shadowed += 1;
                        let held =
                            range.overlaps.iter().any(|o| self.ranges.get(o).is_some_and(|r| r.holders(ip).is_some()));
                        if !held {
                            return fail(format!(
                                "{ip} marked as held elsewhere in {} but nobody holds it",
                                range.span
                            ));
                        }
                    }
                    Slot::Held { key, services } => {
                        if services.is_empty() {
                            return fail(format!("{ip} held by nobody"));
                        }
                        if let Some(other) = held_in.insert(ip, *id) {
                            return fail(format!("{ip} held through ranges {other} and {id}"));
                        }
                        for (i, s) in services.iter().enumerate() {
                            let Some(view) = self.services.get(s) else {
                                return fail(format!("{ip} held by unknown Service {s}"));
                            };
                            if !view.allocated.iter().any(|a| a.ip == ip && a.range == *id) {
                                return fail(format!("{ip} held by {s}, which does not list it"));
                            }
                            if view.sharing.key != *key {
                                return fail(format!(
                                    "{ip} held under key {key:?} by {s} with key {:?}",
                                    view.sharing.key
                                ));
                            }
                            for t in &services[i + 1..] {
                                let other = self.services.get(t).map(|v| &v.sharing);
                                if other.is_none_or(|o| sharing::incompatibility(&view.sharing, o).is_some()) {
                                    return fail(format!("{ip} shared by incompatible {s} and {t}"));
                                }
                            }
                        }
                        if let Some(k) = key
                            && !self.sharing.entries(k).contains(&(ip, *id))
                        {
                            return fail(format!("{ip} held under key {k} but not indexed"));
                        }
                    }
                }
            }
            if shadowed != range.shadowed {
                return fail(format!(
                    "range {} counts {} shadowed addresses, has {shadowed}",
                    range.span, range.shadowed
                ));
            }
        }
        for (key, entries) in self.sharing.iter() {
            for (ip, id) in entries {
                let indexed =
                    self.ranges.get(id).and_then(|r| r.holders(*ip)).is_some_and(|(k, _)| k.as_deref() == Some(key));
                if !indexed {
                    return fail(format!("stale sharing index entry {ip} under {key}"));
                }
            }
        }
        for (key, view) in &self.services {
            for a in &view.allocated {
                let holds =
                    self.ranges.get(&a.range).and_then(|r| r.holders(a.ip)).is_some_and(|(_, s)| s.contains(key));
                if !holds {
                    return fail(format!("{key} lists {} but the range does not record it", a.ip));
                }
            }
            if let Some(seq) = view.waiting
                && self.waiting.get(&seq) != Some(key)
            {
                return fail(format!("{key} thinks it waits at {seq}"));
            }
        }
        for (seq, key) in &self.waiting {
            if self.services.get(key).and_then(|v| v.waiting) != Some(*seq) {
                return fail(format!("queue entry {seq} for {key} is stale"));
            }
        }
        Ok(())
    }
}
