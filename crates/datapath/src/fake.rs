//! An in-memory [`LbDatapath`] for unit tests of the agent's controllers: no root, no kernel. It
//! runs the same planning code as the real datapath, so its dumps and stats are what the kernel
//! maps would hold, and it records every attach call.
//!
//! [`FakeDatapath`] is a handle: clones share one state, so a test hands one clone to the
//! controller under test and looks into the state through another.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::abi::{Ct4Key, CtEntry};
use crate::datapath::LbDatapath;
use crate::error::Result;
use crate::l2::{self, L2Entry, L2Row, L2SyncStats, L2Table};
use crate::lbstate::{self, LbState, SyncStats};
use crate::service::ServiceEntry;

/// What is attached where, as the fake remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    Pod { addr: Ipv4Addr },
    Netdev { snat_addr: Option<Ipv4Addr> },
}

/// What the fake datapath holds and has been asked.
#[derive(Debug, Default)]
pub struct FakeDatapathState {
    /// The service maps as the real datapath would hold them.
    pub lb: LbState,
    /// The services of the last successful sync.
    pub services: Vec<ServiceEntry>,
    pub syncs: usize,
    pub devices: BTreeMap<String, Attachment>,
    pub socket_lb_cgroup: Option<PathBuf>,
    /// When set, the next call fails with this error message (then it is cleared).
    pub fail_next: Option<String>,
    /// Map sizes, as the kernel maps have them; None: unbounded.
    pub capacity: Option<crate::LbUsage>,
    /// The L2 responder maps as the real datapath would hold them: (ip, ifindex) → (mac,
    /// responses). Tests may bump a counter to play an answered request.
    pub l2: L2Table,
    /// The entries of the last successful `sync_l2`, as passed.
    pub l2_desired: Vec<L2Entry>,
    pub l2_syncs: usize,
    /// The max age of the last heartbeat; None when never refreshed or cleared.
    pub l2_liveness: Option<Duration>,
    pub l2_refreshes: usize,
}

impl FakeDatapathState {
    fn check_failure(&mut self) -> Result<()> {
        match self.fail_next.take() {
            Some(reason) => Err(crate::Error::Interface { ifname: "fake".into(), reason }),
            None => Ok(()),
        }
    }
}

/// A cloneable handle on one in-memory datapath.
#[derive(Debug, Clone, Default)]
pub struct FakeDatapath {
    state: Arc<Mutex<FakeDatapathState>>,
}

impl FakeDatapath {
    pub fn new() -> Self {
        Self::default()
    }

    /// The datapath's state, to inspect or change.
    pub fn state(&self) -> MutexGuard<'_, FakeDatapathState> {
        // A test that panicked while holding the lock must not hide its own failure behind
        // poison errors in the next assertion.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next call fails with `reason`.
    pub fn fail_next(&self, reason: &str) {
        self.state().fail_next = Some(reason.into());
    }
}

impl LbDatapath for FakeDatapath {
    fn sync_services(&mut self, services: &[ServiceEntry]) -> Result<SyncStats> {
        let mut state = self.state();
        state.check_failure()?;
        let desired = lbstate::desired(services, &state.lb)?;
        if let Some(capacity) = &state.capacity {
            crate::LbUsage::of(&desired).check_fits(capacity, services.len())?;
        }
        let ops = lbstate::plan(&state.lb, &desired);
        for op in &ops {
            state.lb.apply(op);
        }
        state.services = services.to_vec();
        state.syncs += 1;
        Ok(lbstate::stats(&ops))
    }

    fn capacity(&self) -> Option<crate::LbUsage> {
        self.state().capacity
    }

    fn attach_pod_device(&mut self, ifname: &str, pod_addr: Ipv4Addr) -> Result<()> {
        let mut state = self.state();
        state.check_failure()?;
        state.devices.insert(ifname.into(), Attachment::Pod { addr: pod_addr });
        Ok(())
    }

    fn forget_missing_devices(&mut self) -> Result<usize> {
        self.state().check_failure()?;
        Ok(0)
    }

    fn attach_netdev(&mut self, ifname: &str, snat_addr: Option<Ipv4Addr>) -> Result<()> {
        let mut state = self.state();
        state.check_failure()?;
        state.devices.insert(ifname.into(), Attachment::Netdev { snat_addr });
        Ok(())
    }

    fn detach_device(&mut self, ifname: &str) -> Result<()> {
        let mut state = self.state();
        state.check_failure()?;
        state.devices.remove(ifname);
        Ok(())
    }

    fn attach_socket_lb(&mut self, cgroup: &Path) -> Result<()> {
        let mut state = self.state();
        state.check_failure()?;
        state.socket_lb_cgroup = Some(cgroup.into());
        Ok(())
    }

    fn detach_socket_lb(&mut self) -> Result<()> {
        let mut state = self.state();
        state.check_failure()?;
        state.socket_lb_cgroup = None;
        Ok(())
    }

    fn gc_conntrack(&mut self) -> Result<usize> {
        self.state().check_failure()?;
        Ok(0)
    }

    fn service_maps(&self) -> Result<LbState> {
        Ok(self.state().lb.clone())
    }

    /// The fake forwards no packets, so it tracks no connections.
    fn conntrack_entries(&self) -> Result<Vec<(Ct4Key, CtEntry)>> {
        Ok(Vec::new())
    }

    fn sync_l2(&mut self, entries: &[L2Entry]) -> Result<L2SyncStats> {
        let mut state = self.state();
        state.check_failure()?;
        let p = l2::plan(&state.l2, &l2::desired(entries)?);
        l2::apply_in_memory(&mut state.l2, &p);
        state.l2_desired = entries.to_vec();
        state.l2_syncs += 1;
        Ok(p.stats)
    }

    fn refresh_l2_liveness(&mut self, max_age: Duration) -> Result<()> {
        let mut state = self.state();
        state.check_failure()?;
        state.l2_liveness = Some(max_age);
        state.l2_refreshes += 1;
        Ok(())
    }

    fn clear_l2_liveness(&mut self) -> Result<()> {
        let mut state = self.state();
        state.check_failure()?;
        state.l2_liveness = None;
        Ok(())
    }

    fn l2_entries(&self) -> Result<Vec<L2Row>> {
        Ok(l2::rows_of(&self.state().l2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi;
    use crate::service::{Backend, Protocol, ServiceKind};

    #[test]
    fn fake_syncs_idempotently_and_records_attachments() {
        let mut dp = FakeDatapath::new();
        let svc = ServiceEntry::new(
            ServiceKind::ClusterIp,
            Ipv4Addr::new(10, 96, 0, 1),
            443,
            Protocol::Tcp,
            vec![Backend::active(Ipv4Addr::new(172, 20, 0, 5), 6443, true)],
        );
        let first = dp.sync_services(std::slice::from_ref(&svc)).unwrap();
        assert!(first.upserts > 0);
        assert_eq!(dp.sync_services(&[svc]).unwrap(), SyncStats::default());
        dp.attach_netdev("eth1", Some(Ipv4Addr::new(192, 168, 10, 100))).unwrap();
        dp.attach_pod_device("lxc0123", Ipv4Addr::new(172, 20, 0, 5)).unwrap();
        assert_eq!(dp.state().devices.len(), 2);
        let maps = dp.service_maps().unwrap();
        let slot =
            maps.services[&abi::Lb4Key::new(Ipv4Addr::new(10, 96, 0, 1), 443, abi::IPPROTO_TCP, 1, abi::LB_SCOPE_ALL)];
        let backend = maps.backends[&slot.backend_id];
        assert_eq!(
            (Ipv4Addr::from(backend.address), abi::port_host(backend.port), backend.proto),
            (Ipv4Addr::new(172, 20, 0, 5), 6443, abi::IPPROTO_TCP)
        );
        let watcher = dp.clone();
        watcher.fail_next("boom");
        assert!(dp.sync_services(&[]).is_err());
        assert_eq!(watcher.state().syncs, 2, "clones share one state");
    }

    #[test]
    fn fake_reconciles_l2_entries_like_the_maps() {
        let mut dp = FakeDatapath::new();
        let mac = [2, 0, 0, 0, 0, 1];
        let vip = L2Entry { ip: "192.168.10.211".parse().unwrap(), ifindex: 3, mac };
        let stats = dp.sync_l2(&[vip]).unwrap();
        assert_eq!(stats.added, vec![vip]);
        assert_eq!(dp.sync_l2(&[vip]).unwrap(), L2SyncStats::default());
        dp.refresh_l2_liveness(Duration::from_secs(15)).unwrap();
        assert_eq!(dp.state().l2_liveness, Some(Duration::from_secs(15)));
        assert_eq!(dp.l2_entries().unwrap(), vec![L2Row { ip: vip.ip, ifindex: 3, mac, responses: 0 }]);
        assert_eq!(dp.sync_l2(&[]).unwrap().removed, 1);
        assert!(dp.l2_entries().unwrap().is_empty());
        dp.clear_l2_liveness().unwrap();
        assert_eq!(dp.state().l2_liveness, None);
    }
}
