//! Puts the datapath's programs on the node's devices and keeps them there as pods come and go:
//! `from_netdev` on the node's devices, `from_container`/`to_container` on every pod veth
//! (`lxc*`). New pods get theirs from the CNI path before ADD answers; a link watcher looks at
//! the node's links every few hundred milliseconds and attaches to whatever is new, or was
//! recreated under the same name (a new ifindex): node devices, and pods wired while no datapath
//! was open. A pod veth is attached with its pod's address, the only source its packets may
//! have; one whose address the pod network does not know is left for the next pass. A deleted pod's veth takes its hooks with it, but not its link pins (each holds the
//! defunct link and its program) nor its device-map entry: when a device goes (one it attached,
//! or one with pins that is not among the links), at start and every [`RECONCILE_EVERY`] the
//! attacher forgets devices that are gone and removes their pins, and logs what it removed.
//!
//! Attaching is idempotent: at start every device is attached again, which swaps the new
//! programs in behind the pinned links of the previous run.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use api::error::Chain;
use ipnet::Ipv4Net;
use netconf::{LinkInfo, Netconf};
use tokio_util::sync::CancellationToken;

use crate::datapath_worker::DatapathHandle;

/// How often pins and device-map entries are checked against the live devices even when no
/// device was seen going (one may have gone and come back between two passes, or while no agent ran).
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// Name prefixes of devices that are never node devices: cilia's host pair and pod veths.
const NOT_NETDEVS: [&str; 4] = ["lo", "cilia_", "cilium_", "lxc"];
const POD_PREFIX: &str = "lxc";

/// One link as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub up: bool,
    pub addresses: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    Pod { name: String, index: u32 },
    Netdev { name: String, index: u32, snat: Option<Ipv4Addr> },
}

impl Attach {
    fn key(&self) -> (&str, u32) {
        match self {
            Attach::Pod { name, index } | Attach::Netdev { name, index, .. } => (name, *index),
        }
    }
}

/// Which links need programs: pod veths and node devices not attached yet under their current
/// ifindex. `devices` empty means every up device with an IPv4 address that is not loopback,
/// cilia's own or a pod's. A node device's SNAT address is the node's InternalIP when the device
/// carries it, else its first address.
pub fn plan(
    links: &[Link],
    devices: &[String],
    internal_ip: Option<Ipv4Addr>,
    attached: &BTreeMap<String, u32>,
) -> Vec<Attach> {
    let mut out = Vec::new();
    for link in links {
        if attached.get(&link.name) == Some(&link.index) {
            continue;
        }
        if link.name.starts_with(POD_PREFIX) {
            out.push(Attach::Pod { name: link.name.clone(), index: link.index });
            continue;
        }
        let wanted = if devices.is_empty() {
            link.up && !link.addresses.is_empty() && !NOT_NETDEVS.iter().any(|p| link.name.starts_with(p))
        } else {
            devices.contains(&link.name)
        };
        if wanted {
            let snat = internal_ip
                .filter(|ip| link.addresses.iter().any(|a| a.addr() == *ip))
                .or_else(|| link.addresses.first().map(Ipv4Net::addr));
            out.push(Attach::Netdev { name: link.name.clone(), index: link.index, snat });
        }
    }
    out
}

/// The address of the pod behind a host-side veth, as the pod network allocated it.
pub type PodAddressOf = std::sync::Arc<dyn Fn(&str) -> Option<Ipv4Addr> + Send + Sync>;

pub struct Attacher {
    datapath: DatapathHandle,
    pod_address: PodAddressOf,
    devices: Vec<String>,
    internal_ip: Option<Ipv4Addr>,
    /// Device name → ifindex it was attached under.
    attached: BTreeMap<String, u32>,
    /// Devices went away (or may have, while no agent ran) since the datapath last forgot them.
    forget_pending: bool,
    last_reconcile: Option<std::time::Instant>,
    /// Totals since start: device-map entries forgotten and devices whose link pins were removed.
    pub forgotten_total: usize,
    pub unpinned_total: usize,
}

impl Attacher {
    pub fn new(
        datapath: DatapathHandle,
        pod_address: PodAddressOf,
        devices: Vec<String>,
        internal_ip: Option<Ipv4Addr>,
    ) -> Self {
        Attacher {
            datapath,
            pod_address,
            devices,
            internal_ip,
            attached: BTreeMap::new(),
            forget_pending: true,
            last_reconcile: None,
            forgotten_total: 0,
            unpinned_total: 0,
        }
    }

    /// Looks at the links once and attaches what needs it. Returns how many attaches failed.
    pub async fn pass(&mut self, kernel: &Netconf) -> netconf::Result<usize> {
        let infos: Vec<LinkInfo> = kernel.links().await?;
        let mut links = Vec::with_capacity(infos.len());
        for info in infos {
            // Addresses matter only for node devices; pod veths have none on the host side.
            let addresses = if info.name.starts_with(POD_PREFIX) || self.attached.get(&info.name) == Some(&info.index) {
                Vec::new()
            } else {
                kernel.addresses(info.index).await.unwrap_or_default()
            };
            links.push(Link { name: info.name, index: info.index, up: info.up, addresses });
        }
        let before = self.attached.len();
        self.attached.retain(|name, _| links.iter().any(|l| &l.name == name));
        self.forget_pending |= self.attached.len() < before;
        // A pod's veth can come and go between two passes (a pod deleted right after it
        // started, on a busy node): the CNI plugin pinned its links, this attacher never saw it.
        // The pins say so.
        if !self.forget_pending {
            // A datapath that cannot answer gives no pins: the periodic pass checks again.
            let pinned = self.datapath.call(|dp| dp.pinned_devices()).await.unwrap_or_default();
            self.forget_pending = pinned.iter().any(|name| !links.iter().any(|l| &l.name == name));
        }
        let mut failed = 0;
        let periodic = self.last_reconcile.is_none_or(|t| t.elapsed() >= RECONCILE_EVERY);
        if self.forget_pending || periodic {
            match self.reconcile_gone_devices().await {
                Ok(()) => self.forget_pending = false,
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %Chain(&e), "forgetting deleted devices failed; retrying");
                }
            }
        }
        for action in plan(&links, &self.devices, self.internal_ip, &self.attached) {
            let result = match &action {
                Attach::Pod { name, .. } => match (self.pod_address)(name) {
                    Some(addr) => {
                        let name = name.clone();
                        self.datapath.try_call(move |dp| dp.attach_pod_device(&name, addr)).await
                    }
                    None => Err(datapath::Error::Interface {
                        ifname: name.clone(),
                        reason: "the pod network knows no address for this veth".into(),
                    }),
                },
                Attach::Netdev { name, snat, .. } => {
                    let (name, snat) = (name.clone(), *snat);
                    self.datapath.try_call(move |dp| dp.attach_netdev(&name, snat)).await
                }
            };
            let (name, index) = action.key();
            match result {
                Ok(()) => {
                    match &action {
                        Attach::Pod { .. } => tracing::debug!(device = name, "pod programs attached"),
                        Attach::Netdev { snat, .. } => {
                            tracing::info!(device = name, snat = ?snat, "from_netdev attached");
                        }
                    }
                    self.attached.insert(name.to_string(), index);
                }
                Err(e) => {
                    // A pod veth can vanish between the listing and the attach; the next pass
                    // no longer sees it.
                    failed += 1;
                    tracing::warn!(device = name, error = %Chain(&e), "attaching the datapath failed; retrying");
                }
            }
        }
        Ok(failed)
    }

    /// Forgets devices that are gone from the device map and removes their link pins.
    async fn reconcile_gone_devices(&mut self) -> datapath::Result<()> {
        let (forgotten, unpinned) =
            self.datapath.try_call(|dp| Ok((dp.forget_missing_devices()?, dp.remove_stale_links()?))).await?;
        self.last_reconcile = Some(std::time::Instant::now());
        self.forgotten_total += forgotten;
        self.unpinned_total += unpinned.len();
        let counters = &crate::datapath_gc::COUNTERS;
        counters.device_entries_removed.fetch_add(forgotten as u64, std::sync::atomic::Ordering::Relaxed);
        counters.devices_unpinned.fetch_add(unpinned.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if forgotten + unpinned.len() > 0 {
            tracing::info!(
                device_map_entries = forgotten,
                link_pins_of = ?unpinned,
                forgotten_total = self.forgotten_total,
                unpinned_total = self.unpinned_total,
                "removed the datapath state of devices that are gone"
            );
        }
        Ok(())
    }

    /// Runs passes every `poll` until `shutdown`.
    pub async fn run(mut self, kernel: Netconf, poll: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.pass(&kernel).await {
                tracing::warn!(error = %Chain(&e), "listing links failed");
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// The cgroup v2 root, where socket-LB hooks see every process of the machine (each node's hooks
/// act only in that node's network namespace).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    cgroup2_root_in(&mounts)
}

fn cgroup2_root_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| Path::new(f[1]).to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, index: u32, addrs: &[&str]) -> Link {
        Link { name: name.into(), index, up: true, addresses: addrs.iter().map(|a| a.parse().unwrap()).collect() }
    }

    fn links() -> Vec<Link> {
        vec![
            link("lo", 1, &["127.0.0.1/8"]),
            link("eth0", 2, &["10.0.2.15/24"]),
            link("eth1", 3, &["192.168.10.100/24"]),
            link("cilium_host", 4, &["172.20.0.1/32"]),
            link("cilium_net", 5, &[]),
            link("lxc0123456789ab", 6, &[]),
        ]
    }

    #[test]
    fn auto_detects_node_devices_and_finds_pod_veths() {
        let ip = Some(Ipv4Addr::new(192, 168, 10, 100));
        let got = plan(&links(), &[], ip, &BTreeMap::new());
        assert_eq!(
            got,
            [
                Attach::Netdev { name: "eth0".into(), index: 2, snat: Some(Ipv4Addr::new(10, 0, 2, 15)) },
                Attach::Netdev { name: "eth1".into(), index: 3, snat: ip },
                Attach::Pod { name: "lxc0123456789ab".into(), index: 6 },
            ]
        );
        // Explicit devices only.
        let got = plan(&links(), &["eth1".into()], ip, &BTreeMap::new());
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Attach::Netdev { name, .. } if name == "eth1"));
    }

    #[test]
    fn attached_links_are_skipped_until_recreated() {
        let mut attached: BTreeMap<String, u32> =
            [("eth0", 2), ("eth1", 3), ("lxc0123456789ab", 6)].into_iter().map(|(n, i)| (n.to_string(), i)).collect();
        assert!(plan(&links(), &[], None, &attached).is_empty());
        // The pod's veth was deleted and created again under the same name.
        attached.insert("lxc0123456789ab".into(), 5);
        assert_eq!(plan(&links(), &[], None, &attached), [Attach::Pod { name: "lxc0123456789ab".into(), index: 6 }]);
        // A device without addresses or down is not a node device.
        let mut l = links();
        l[1].up = false;
        l[2].addresses.clear();
        assert!(plan(&l, &[], None, &BTreeMap::new()).iter().all(|a| matches!(a, Attach::Pod { .. })));
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let mounts =
            "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\nbpf /sys/fs/bpf bpf rw 0 0\n";
        assert_eq!(cgroup2_root_in(mounts), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_root_in("proc /proc proc rw 0 0\n"), None);
    }
}
