//! The node-local pod IP allocator: addresses from the node's pod CIDR, keyed by container ID,
//! persisted to a state file so a restarted agent never hands out an address twice.
//!
//! The network address, the broadcast address and the router IP are never handed out. Allocation
//! is next-fit (like Kubernetes' cidrset "allocate next"): it continues after the last address
//! handed out, so a released address is reused as late as possible and stale ARP entries or
//! conntrack state of a deleted pod do not meet a new one.
//!
//! Every change is written before it is acted on (temp file, fsync, rename, fsync of the
//! directory), so after a crash the file holds at least every address a pod may be using.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "pod-ips.json";
const STATE_VERSION: u32 = 1;

/// One container's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    pub ip: Ipv4Addr,
    /// Interface name inside the pod (CNI_IFNAME).
    #[serde(default)]
    pub ifname: String,
    /// Namespace path the pod had at ADD, for diagnostics.
    #[serde(default)]
    pub netns: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    version: u32,
    cidr: Ipv4Net,
    router_ip: Ipv4Addr,
    /// The last address handed out; the next search starts after it.
    last: Option<Ipv4Addr>,
    allocations: BTreeMap<String, Allocation>,
}

/// What went wrong, with the state file's path where it matters.
#[derive(Debug, thiserror::Error)]
pub enum PodIpError {
    #[error("pod CIDR {cidr} has no free address ({used} in use)")]
    Exhausted { cidr: Ipv4Net, used: usize },
    #[error("container {container_id} already has {ip}")]
    AlreadyAllocated { container_id: String, ip: Ipv4Addr },
    #[error("{ip} is already allocated to container {owner}")]
    InUse { ip: Ipv4Addr, owner: String },
    #[error("{ip} is not an assignable address of pod CIDR {cidr}")]
    NotAssignable { ip: Ipv4Addr, cidr: Ipv4Net },
    #[error("router IP {router_ip} is outside pod CIDR {cidr}")]
    RouterOutsideCidr { router_ip: Ipv4Addr, cidr: Ipv4Net },
    #[error("pod IP state {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pod IP state {path} is corrupt (refusing to start from scratch, which could hand out addresses in use)")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The allocator. Not internally synchronized: the agent keeps it behind a mutex.
#[derive(Debug)]
pub struct PodIpAllocator {
    path: PathBuf,
    state: State,
}

impl PodIpAllocator {
    /// Loads the allocations from `state_dir` (created if missing), or starts empty.
    ///
    /// Allocations recorded under a different CIDR are kept: they are outside the new range, so
    /// they can never collide with a new address, and DEL still releases them.
    pub fn open(state_dir: &Path, cidr: Ipv4Net, router_ip: Ipv4Addr) -> Result<Self, PodIpError> {
        let cidr = cidr.trunc();
        if !cidr.contains(&router_ip) {
            return Err(PodIpError::RouterOutsideCidr { router_ip, cidr });
        }
        fs::create_dir_all(state_dir).map_err(|source| PodIpError::Io { path: state_dir.to_path_buf(), source })?;
        let path = state_dir.join(STATE_FILE);
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let mut state: State = serde_json::from_slice(&bytes)
                    .map_err(|source| PodIpError::Corrupt { path: path.clone(), source })?;
                state.cidr = cidr;
                state.router_ip = router_ip;
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                State { version: STATE_VERSION, cidr, router_ip, last: None, allocations: BTreeMap::new() }
            }
            Err(source) => return Err(PodIpError::Io { path, source }),
        };
        Ok(PodIpAllocator { path, state })
    }

    /// Hands `container_id` a free address and records it before returning.
    pub fn allocate(&mut self, container_id: &str, ifname: &str, netns: &str) -> Result<Ipv4Addr, PodIpError> {
        if let Some(a) = self.state.allocations.get(container_id) {
            return Err(PodIpError::AlreadyAllocated { container_id: container_id.into(), ip: a.ip });
        }
        let used: HashSet<Ipv4Addr> = self.state.allocations.values().map(|a| a.ip).collect();
        let candidates: Vec<Ipv4Addr> = self.assignable().collect();
        let start = match self.state.last {
            Some(last) => candidates.iter().position(|ip| *ip > last).unwrap_or(0),
            None => 0,
        };
        let ip = (0..candidates.len())
            .map(|i| candidates[(start + i) % candidates.len()])
            .find(|ip| !used.contains(ip))
            .ok_or(PodIpError::Exhausted { cidr: self.state.cidr, used: used.len() })?;
        let previous_last = self.state.last.replace(ip);
        self.state
            .allocations
            .insert(container_id.into(), Allocation { ip, ifname: ifname.into(), netns: netns.into() });
        if let Err(e) = self.save() {
            self.state.allocations.remove(container_id);
            self.state.last = previous_last;
            return Err(e);
        }
        Ok(ip)
    }

    /// Records an address found in use in the kernel (reconciliation after a lost state file).
    pub fn adopt(&mut self, container_id: &str, allocation: Allocation) -> Result<(), PodIpError> {
        if let Some(a) = self.state.allocations.get(container_id) {
            return Err(PodIpError::AlreadyAllocated { container_id: container_id.into(), ip: a.ip });
        }
        if !self.is_assignable(allocation.ip) {
            return Err(PodIpError::NotAssignable { ip: allocation.ip, cidr: self.state.cidr });
        }
        if let Some((owner, _)) = self.state.allocations.iter().find(|(_, a)| a.ip == allocation.ip) {
            return Err(PodIpError::InUse { ip: allocation.ip, owner: owner.clone() });
        }
        self.state.allocations.insert(container_id.into(), allocation);
        if let Err(e) = self.save() {
            self.state.allocations.remove(container_id);
            return Err(e);
        }
        Ok(())
    }

    /// Frees the container's address; `Ok(None)` if it had none.
    pub fn release(&mut self, container_id: &str) -> Result<Option<Allocation>, PodIpError> {
        let Some(released) = self.state.allocations.remove(container_id) else {
            return Ok(None);
        };
        if let Err(e) = self.save() {
            self.state.allocations.insert(container_id.into(), released);
            return Err(e);
        }
        Ok(Some(released))
    }

    pub fn get(&self, container_id: &str) -> Option<&Allocation> {
        self.state.allocations.get(container_id)
    }

    /// Every allocation, by container ID.
    pub fn allocations(&self) -> &BTreeMap<String, Allocation> {
        &self.state.allocations
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.state.cidr
    }

    /// How many addresses are still free.
    pub fn available(&self) -> usize {
        let used: HashSet<Ipv4Addr> = self.state.allocations.values().map(|a| a.ip).collect();
        self.assignable().filter(|ip| !used.contains(ip)).count()
    }

    pub fn state_path(&self) -> &Path {
        &self.path
    }

    fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.state.cidr.contains(&ip) && self.assignable().any(|a| a == ip)
    }

    /// Hosts of the CIDR (no network or broadcast address for prefixes below /31), minus the
    /// router IP.
    fn assignable(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let router = self.state.router_ip;
        self.state.cidr.hosts().filter(move |ip| *ip != router)
    }

    fn save(&self) -> Result<(), PodIpError> {
        let io = |source| PodIpError::Io { path: self.path.clone(), source };
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state always serializes");
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
        let mut file = File::create(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(io)?;
        // The rename is durable only once the directory entry is.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr() -> Ipv4Net {
        "172.20.1.0/29".parse().unwrap()
    }

    #[test]
    fn skips_network_router_and_broadcast() {
        let dir = tempfile::tempdir().unwrap();
        let router = Ipv4Addr::new(172, 20, 1, 3);
        let mut a = PodIpAllocator::open(dir.path(), cidr(), router).unwrap();
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(a.allocate(&format!("c{i}"), "eth0", "").unwrap());
        }
        let expect: Vec<Ipv4Addr> = [1, 2, 4, 5, 6].iter().map(|d| Ipv4Addr::new(172, 20, 1, *d)).collect();
        assert_eq!(got, expect);
        assert!(matches!(a.allocate("c9", "eth0", ""), Err(PodIpError::Exhausted { .. })));
        assert!(matches!(a.allocate("c0", "eth0", ""), Err(PodIpError::AlreadyAllocated { .. })));
    }

    #[test]
    fn next_fit_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let router = Ipv4Addr::new(172, 20, 1, 1);
        let mut a = PodIpAllocator::open(dir.path(), cidr(), router).unwrap();
        let ip_a = a.allocate("a", "eth0", "/run/netns/a").unwrap();
        let ip_b = a.allocate("b", "eth0", "").unwrap();
        assert_eq!(a.release("a").unwrap().unwrap().ip, ip_a);
        assert_eq!(a.release("a").unwrap(), None);
        // Freed addresses come back last.
        let ip_c = a.allocate("c", "eth0", "").unwrap();
        assert!(ip_c > ip_b);

        let b = PodIpAllocator::open(dir.path(), cidr(), router).unwrap();
        assert_eq!(b.get("b").unwrap().ip, ip_b);
        assert_eq!(b.get("c").unwrap().ip, ip_c);
        assert!(b.get("a").is_none());
        assert_eq!(b.available(), 6 - 2 - 1 + 1 - 1);
        let mut b = b;
        let next = b.allocate("d", "eth0", "").unwrap();
        assert!(next != ip_b && next != ip_c && next > ip_c);
    }

    #[test]
    fn adopt_refuses_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let router = Ipv4Addr::new(172, 20, 1, 1);
        let mut a = PodIpAllocator::open(dir.path(), cidr(), router).unwrap();
        let ip = a.allocate("a", "eth0", "").unwrap();
        let alloc = |ip| Allocation { ip, ifname: "eth0".into(), netns: String::new() };
        assert!(matches!(a.adopt("x", alloc(ip)), Err(PodIpError::InUse { .. })));
        assert!(matches!(a.adopt("x", alloc(router)), Err(PodIpError::NotAssignable { .. })));
        a.adopt("x", alloc(Ipv4Addr::new(172, 20, 1, 5))).unwrap();
        assert_ne!(a.allocate("y", "eth0", "").unwrap(), Ipv4Addr::new(172, 20, 1, 5));
    }

    #[test]
    fn corrupt_state_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let err = PodIpAllocator::open(dir.path(), cidr(), Ipv4Addr::new(172, 20, 1, 1)).unwrap_err();
        assert!(matches!(err, PodIpError::Corrupt { .. }));
        assert!(err.to_string().contains(STATE_FILE));
    }
}
