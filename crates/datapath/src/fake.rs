//! An in-memory [`LbDatapath`] for unit tests of the agent's controllers: no root, no kernel. It
//! runs the same planning code as the real datapath, so its dumps and stats are what the kernel
//! maps would hold, and it records every attach call.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::datapath::LbDatapath;
use crate::dump;
use crate::error::Result;
use crate::lbstate::{self, LbState, SyncStats};
use crate::service::ServiceEntry;

/// What is attached where, as the fake remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    Pod,
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
        let ops = lbstate::plan(&self.state, &desired);
        for op in &ops {
            self.state.apply(op);
        }
        self.services = services.to_vec();
        self.syncs += 1;
        Ok(lbstate::stats(&ops))
    }

    fn attach_pod_device(&mut self, ifname: &str) -> Result<()> {
        self.check_failure()?;
        self.devices.insert(ifname.into(), Attachment::Pod);
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
        dp.attach_pod_device("lxc0123").unwrap();
        assert_eq!(dp.devices.len(), 2);
        assert!(dp.lb_list().unwrap().contains("10.96.0.1:443/TCP (1)   172.20.0.5:6443/TCP"));
        dp.fail_next = Some("boom".into());
        assert!(dp.sync_services(&[]).is_err());
        assert_eq!(dp.syncs, 2);
    }
}
