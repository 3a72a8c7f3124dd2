//! How many entries the service datapath's maps hold, and how many a set of frontends needs.
//!
//! A sync that does not fit is refused before any write (a map that fills half way through would
//! leave some frontends pointing at backends that were never written). The agent uses the same
//! numbers to choose which Services to leave out when the whole set does not fit.

use std::fmt;

use crate::error::{Error, Result};
use crate::lbstate::{self, LbState};
use crate::service::ServiceEntry;

/// Entries of each service map: what a sync uses, or what the maps hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbUsage {
    /// Service map rows: one per frontend, backend slot and ICMP echo answer.
    pub services: usize,
    /// Distinct backends (shared by frontends that list the same address, port and protocol).
    pub backends: usize,
    /// Reverse-NAT rows: one per frontend.
    pub revnat: usize,
    /// Maglev lookup tables: one per frontend and scope that uses Maglev.
    pub maglev: usize,
    /// Session-affinity backend rows.
    pub affinity_match: usize,
}

impl LbUsage {
    pub fn of(state: &LbState) -> LbUsage {
        LbUsage {
            services: state.services.len(),
            backends: state.backends.len(),
            revnat: state.revnat.len(),
            maglev: state.maglev.len(),
            affinity_match: state.affinity_match.len(),
        }
    }

    /// What `services` needs, counted from the rows a sync would write.
    pub fn needed(services: &[ServiceEntry]) -> Result<LbUsage> {
        Ok(LbUsage::of(&lbstate::desired(services, &LbState::default())?))
    }

    /// The first map `self` overflows in `capacity`: (map, needed, holds).
    pub fn overflow(&self, capacity: &LbUsage) -> Option<(&'static str, usize, usize)> {
        [
            (crate::abi::MAP_SERVICES, self.services, capacity.services),
            (crate::abi::MAP_BACKENDS, self.backends, capacity.backends),
            (crate::abi::MAP_REVNAT, self.revnat, capacity.revnat),
            (crate::abi::MAP_MAGLEV, self.maglev, capacity.maglev),
            (crate::abi::MAP_AFFINITY_MATCH, self.affinity_match, capacity.affinity_match),
        ]
        .into_iter()
        .find(|(_, needed, holds)| needed > holds)
    }

    /// `Err(Exhausted)` naming the first map `self` overflows in `capacity`.
    pub fn check_fits(&self, capacity: &LbUsage, frontends: usize) -> Result<()> {
        match self.overflow(capacity) {
            None => Ok(()),
            Some((map, needed, holds)) => Err(Error::Exhausted {
                what: map,
                detail: format!(
                    "{frontends} frontends need {needed} entries, the map holds {holds}; raise bpf-lb-map-max \
                     (it applies when the map is next created)"
                ),
            }),
        }
    }
}

impl fmt::Display for LbUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "services {}, backends {}, rev-NAT {}, Maglev tables {}, affinity {}",
            self.services, self.backends, self.revnat, self.maglev, self.affinity_match
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::service::{Backend, LbAlgorithm, Protocol, ServiceKind};

    fn frontend(last: u8, backends: u8, algorithm: LbAlgorithm) -> ServiceEntry {
        let backends = (1..=backends).map(|b| Backend::active(Ipv4Addr::new(172, 20, 0, b), 80, true)).collect();
        let mut e =
            ServiceEntry::new(ServiceKind::ClusterIp, Ipv4Addr::new(10, 96, 0, last), 80, Protocol::Tcp, backends);
        e.algorithm = algorithm;
        e
    }

    #[test]
    fn usage_counts_the_rows_a_sync_writes() {
        let one = LbUsage::needed(&[frontend(1, 3, LbAlgorithm::Random)]).unwrap();
        assert_eq!((one.revnat, one.backends, one.maglev), (1, 3, 0));
        assert!(one.services >= 4, "a frontend row and three backend slots at least: {one}");
        // A second frontend over the same backends shares them; Maglev adds a table.
        let two = LbUsage::needed(&[frontend(1, 3, LbAlgorithm::Random), frontend(2, 3, LbAlgorithm::Maglev)]).unwrap();
        assert_eq!((two.revnat, two.backends, two.maglev), (2, 3, 1));
        assert_eq!(two.services, 2 * one.services);
    }

    /// A sync that replaces one frontend by another never holds more service rows than the larger
    /// of before and after: a full map has room for it.
    #[test]
    fn a_sync_gives_back_the_rows_of_removed_frontends_before_it_adds_rows() {
        let before = [frontend(1, 3, LbAlgorithm::Random), frontend(2, 3, LbAlgorithm::Random)];
        let after = [frontend(2, 3, LbAlgorithm::Random), frontend(3, 3, LbAlgorithm::Random)];
        let current = lbstate::desired(&before, &LbState::default()).unwrap();
        let desired = lbstate::desired(&after, &current).unwrap();
        let bound = current.services.len().max(desired.services.len());
        let mut state = current.clone();
        for op in lbstate::plan(&current, &desired) {
            state.apply(&op);
            assert!(state.services.len() <= bound, "{} rows after {op:?}, the map holds {bound}", state.services.len());
        }
        assert_eq!(state.services, desired.services);
    }

    #[test]
    fn the_first_overflowing_map_is_named_with_its_numbers() {
        let need = LbUsage::needed(&[frontend(1, 3, LbAlgorithm::Maglev)]).unwrap();
        let roomy = LbUsage { services: 100, backends: 100, revnat: 100, maglev: 100, affinity_match: 100 };
        assert_eq!(need.overflow(&roomy), None);
        assert!(need.check_fits(&roomy, 1).is_ok());
        let no_maglev = LbUsage { maglev: 0, ..roomy };
        assert_eq!(need.overflow(&no_maglev), Some((crate::abi::MAP_MAGLEV, 1, 0)));
        let err = need.check_fits(&LbUsage { backends: 2, ..roomy }, 1).unwrap_err().to_string();
        assert!(err.contains(crate::abi::MAP_BACKENDS) && err.contains("need 3 entries, the map holds 2"), "{err}");
    }
}
