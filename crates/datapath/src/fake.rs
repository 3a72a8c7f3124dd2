//! An in-memory [`LbDatapath`] for unit tests of the agent's controllers: no root, no kernel. It
//! runs the same planning code as the real datapath, so its dumps and stats are what the kernel
//! maps would hold, and it records every attach call.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::datapath::LbDatapath;
use crate::dump;
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

#[derive(Debug, Default)]
pub struct FakeDatapath {
    pub state: LbState,
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

impl FakeDatapath {
    pub fn new() -> Self {
        Self::default()
    }

    fn check_failure(&mut self) -> Result<()> {
        match self.fail_next.take() {
            Some(reason) => Err(crate::Error::Interface { ifname: "fake".into(), reason }),
            None => Ok(()),
        }
    }
}

impl LbDatapath for FakeDatapath {
    fn sync_services(&mut self, services: &[ServiceEntry]) -> Result<SyncStats> {
        self.check_failure()?;
        let desired = lbstate::desired(services, &self.state)?;
        if let Some(capacity) = &self.capacity {
            crate::LbUsage::of(&desired).check_fits(capacity, services.len())?;
        }
        let ops = lbstate::plan(&self.state, &desired);
        for op in &ops {
            self.state.apply(op);
        }
        self.services = services.to_vec();
        self.syncs += 1;
        Ok(lbstate::stats(&ops))
    }

    fn capacity(&self) -> Option<crate::LbUsage> {
        self.capacity
    }

    fn attach_pod_device(&mut self, ifname: &str, pod_addr: Ipv4Addr) -> Result<()> {
        self.check_failure()?;
        self.devices.insert(ifname.into(), Attachment::Pod { addr: pod_addr });
        Ok(())
    }

    fn forget_missing_devices(&mut self) -> Result<usize> {
        self.check_failure()?;
        Ok(0)
    }

    fn attach_netdev(&mut self, ifname: &str, snat_addr: Option<Ipv4Addr>) -> Result<()> {
        self.check_failure()?;
        self.devices.insert(ifname.into(), Attachment::Netdev { snat_addr });
        Ok(())
    }

    fn detach_device(&mut self, ifname: &str) -> Result<()> {
        self.check_failure()?;
        self.devices.remove(ifname);
        Ok(())
    }

    fn attach_socket_lb(&mut self, cgroup: &Path) -> Result<()> {
        self.check_failure()?;
        self.socket_lb_cgroup = Some(cgroup.into());
        Ok(())
    }

    fn detach_socket_lb(&mut self) -> Result<()> {
        self.check_failure()?;
        self.socket_lb_cgroup = None;
        Ok(())
    }

    fn gc_conntrack(&mut self) -> Result<usize> {
        self.check_failure()?;
        Ok(0)
    }

    fn lb_list(&self) -> Result<String> {
        Ok(dump::lb_list(&self.state))
    }

    fn ct_list(&self) -> Result<String> {
        Ok(String::new())
    }

    fn sync_l2(&mut self, entries: &[L2Entry]) -> Result<L2SyncStats> {
        self.check_failure()?;
        let p = l2::plan(&self.l2, &l2::desired(entries)?);
        l2::apply_in_memory(&mut self.l2, &p);
        self.l2_desired = entries.to_vec();
        self.l2_syncs += 1;
        Ok(p.stats)
    }

    fn refresh_l2_liveness(&mut self, max_age: Duration) -> Result<()> {
        self.check_failure()?;
        self.l2_liveness = Some(max_age);
        self.l2_refreshes += 1;
        Ok(())
    }

    fn clear_l2_liveness(&mut self) -> Result<()> {
        self.check_failure()?;
        self.l2_liveness = None;
        Ok(())
    }

    fn l2_entries(&self) -> Result<Vec<L2Row>> {
        Ok(l2::rows_of(&self.l2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(dp.devices.len(), 2);
        assert!(dp.lb_list().unwrap().contains("10.96.0.1:443/TCP (1)   172.20.0.5:6443/TCP"));
        dp.fail_next = Some("boom".into());
        assert!(dp.sync_services(&[]).is_err());
        assert_eq!(dp.syncs, 2);
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
        assert_eq!(dp.l2_liveness, Some(Duration::from_secs(15)));
        assert_eq!(dp.l2_entries().unwrap(), vec![L2Row { ip: vip.ip, ifindex: 3, mac, responses: 0 }]);
        assert_eq!(dp.sync_l2(&[]).unwrap().removed, 1);
        assert!(dp.l2_entries().unwrap().is_empty());
        dp.clear_l2_liveness().unwrap();
        assert_eq!(dp.l2_liveness, None);
    }
}
