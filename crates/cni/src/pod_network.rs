//! The agent's pod networking: what ADD, DEL and CHECK do in the kernel and the allocator.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use api::error::Chain;
use ipnet::Ipv4Net;
use netconf::link::format_mac;
use netconf::{HostDeviceConfig, MAIN_TABLE, Netconf, Netns, PodVeth, PodVethSpec, host_ifname_for};

use crate::env::Command;
use crate::error::{CniError, code};
use crate::pod_ips::{Allocation, PodIpAllocator, PodIpError};
use crate::protocol::{Attachment, Interface, PodRoute, Request};

/// Answers the plugin's requests. [`PodNetwork`] is the real one; tests of the socket server
/// plug in fakes.
pub trait CniHandler: Send + Sync + 'static {
    /// ADD answers with the attachment, DEL and CHECK with `None`.
    fn handle(&self, request: Request) -> impl Future<Output = Result<Option<Attachment>, CniError>> + Send;
}

/// The node's pod networking settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkConfig {
    pub node_name: String,
    /// The node's pod CIDR (from the operator).
    pub pod_cidr: Ipv4Net,
    /// The router IP (on `cilium_host`), the pods' gateway.
    pub router_ip: Ipv4Addr,
    /// Device MTU of pod veths and the host device, unless the CNI configuration sets one.
    pub mtu: u32,
    /// MTU metric on the pods' default route (e.g. 1450 in tunnel mode).
    pub route_mtu: Option<u32>,
    /// Node namespace; `None` means the agent's own, where it already runs.
    pub node_netns: Option<PathBuf>,
    /// Where the allocator keeps its state file.
    pub state_dir: PathBuf,
}

/// Why a request failed; converts to the CNI error the plugin prints.
#[derive(Debug, thiserror::Error)]
pub enum PodNetworkError {
    #[error(transparent)]
    Kernel(#[from] netconf::Error),
    #[error(transparent)]
    PodIps(#[from] PodIpError),
    #[error("container {container_id} is unknown to this node")]
    UnknownContainer { container_id: String },
    #[error("CNI_NETNS {path}")]
    BadNetns {
        path: String,
        #[source]
        source: netconf::Error,
    },
    #[error("container {container_id}: {what}")]
    CheckFailed { container_id: String, what: String },
    #[error("attaching the datapath to {ifname} failed: {reason}")]
    Datapath { ifname: String, reason: String },
}

impl PodNetworkError {
    /// The CNI error code and message for the plugin.
    pub fn to_cni(&self) -> CniError {
        let code = match self {
            PodNetworkError::Kernel(_) => code::AGENT_FAILURE,
            PodNetworkError::PodIps(PodIpError::Exhausted { .. }) => code::POD_CIDR_EXHAUSTED,
            PodNetworkError::PodIps(PodIpError::AlreadyAllocated { .. }) => code::ALREADY_ATTACHED,
            PodNetworkError::PodIps(_) => code::IO_FAILURE,
            PodNetworkError::UnknownContainer { .. } => code::UNKNOWN_CONTAINER,
            PodNetworkError::BadNetns { .. } => code::INVALID_ENV,
            PodNetworkError::CheckFailed { .. } => code::CHECK_FAILED,
            PodNetworkError::Datapath { .. } => code::AGENT_FAILURE,
        };
        // the message says what failed, the details why: every cause, outermost first
        let mut causes = Vec::new();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            causes.push(c.to_string());
            cause = c.source();
        }
        CniError::new(code, self.to_string()).with_details(causes.join(": "))
    }
}

/// What a start-time reconciliation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Allocations kept because their veth exists.
    pub kept: usize,
    /// Allocations released because their veth is gone (pod deleted while the agent was down).
    pub released: Vec<String>,
    /// Veths found without an allocation and given back their address (lost state file).
    pub adopted: Vec<String>,
    /// Veths without a usable record, removed.
    pub removed: Vec<String>,
}

/// Pod networking of one node: wires pods with [`netconf`], addresses them from the node's pod
/// CIDR.
/// Called with a pod's host-side interface and address once it is wired, before ADD answers (the
/// agent puts its datapath programs there), so the pod's first packet already meets them. An
/// error fails the ADD, and the runtime retries it. The hook returns a future, so that work it
/// hands to another thread is awaited without holding one of the runtime's workers.
pub type WiredHook = Arc<dyn Fn(&str, Ipv4Addr) -> WiredHookFuture + Send + Sync>;

/// What a [`WiredHook`] returns.
pub type WiredHookFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

pub struct PodNetwork {
    config: PodNetworkConfig,
    node: Netconf,
    ips: Mutex<PodIpAllocator>,
    wired_hook: std::sync::RwLock<Option<WiredHook>>,
    /// Requests for one container run one at a time (a runtime may retry ADD while DEL runs);
    /// different containers proceed in parallel.
    container_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodNetwork").field("config", &self.config).finish()
    }
}

impl PodNetwork {
    /// Connects to the node namespace, makes sure the host device exists, loads the allocations
    /// and reconciles them with the kernel.
    pub async fn start(config: PodNetworkConfig) -> Result<Self, PodNetworkError> {
        let node = match &config.node_netns {
            Some(path) => Netconf::connect_path(path).await?,
            None => Netconf::current()?,
        };
        node.ensure_host_device(&HostDeviceConfig {
            router_ip: config.router_ip,
            pod_cidr: config.pod_cidr,
            mtu: config.mtu,
        })
        .await?;
        let ips = PodIpAllocator::open(&config.state_dir, config.pod_cidr, config.router_ip)?;
        let network = PodNetwork {
            config,
            node,
            ips: Mutex::new(ips),
            wired_hook: std::sync::RwLock::new(None),
            container_locks: Mutex::new(HashMap::new()),
        };
        let report = network.reconcile().await?;
        tracing::info!(
            node = %network.config.node_name,
            kept = report.kept,
            released = ?report.released,
            adopted = ?report.adopted,
            removed = ?report.removed,
            "pod network reconciled"
        );
        Ok(network)
    }

    pub fn config(&self) -> &PodNetworkConfig {
        &self.config
    }

    /// The node namespace's netlink connection.
    pub fn node(&self) -> &Netconf {
        &self.node
    }

    /// A snapshot of the allocations, by container ID.
    pub fn allocations(&self) -> BTreeMap<String, Allocation> {
        self.allocator().allocations().clone()
    }

    /// The address of the pod whose host-side veth is `ifname`, if it has one.
    pub fn address_of_host_veth(&self, ifname: &str) -> Option<Ipv4Addr> {
        let ips = self.allocator();
        ips.allocations().iter().find(|(container_id, _)| host_ifname_for(container_id) == ifname).map(|(_, a)| a.ip)
    }

    /// Aligns allocations and pod veths: an allocation whose veth exists keeps its address; one
    /// whose veth is gone is released, unless the container's network namespace still exists (an
    /// ADD the agent was killed in: the runtime retries it and gets the same address); a veth whose alias names a container without an
    /// allocation gets its address back from its host route, or is removed if that fails.
    pub async fn reconcile(&self) -> Result<ReconcileReport, PodNetworkError> {
        let veths = self.node.pod_veths().await?;
        let routes = self.node.routes(MAIN_TABLE).await?;
        let mut report = ReconcileReport::default();
        let known: BTreeMap<String, Allocation> = self.allocations();
        for container_id in known.keys() {
            let name = host_ifname_for(container_id);
            if veths.iter().any(|v| v.name == name) || pending_add(&known[container_id]) {
                report.kept += 1;
            } else {
                self.allocator().release(container_id)?;
                report.released.push(container_id.clone());
            }
        }
        for veth in &veths {
            let Some(container_id) = veth.alias.as_deref().filter(|c| host_ifname_for(c) == veth.name) else {
                // Not a device cilia made (or from a release that named devices differently).
                continue;
            };
            if known.contains_key(container_id) {
                continue;
            }
            let ip = routes
                .iter()
                .find(|r| {
                    r.oif == Some(veth.index)
                        && r.destination.prefix_len() == 32
                        && self.config.pod_cidr.contains(&r.destination.addr())
                })
                .map(|r| r.destination.addr());
            let adopted = match ip {
                Some(ip) => self
                    .allocator()
                    .adopt(container_id, Allocation { ip, ifname: String::new(), netns: String::new() })
                    .map_err(|e| tracing::warn!(device = %veth.name, error = %Chain(&e), "cannot adopt pod veth"))
                    .is_ok(),
                None => false,
            };
            if adopted {
                report.adopted.push(container_id.to_string());
            } else {
                self.node.delete_pod_veth(&veth.name).await?;
                report.removed.push(veth.name.clone());
            }
        }
        Ok(report)
    }

    /// ADD: allocate, wire, report. On failure nothing stays behind: the veth is removed by
    /// netconf and the address released here.
    ///
    /// ADD is idempotent: a container that has an address already (the runtime retries an ADD
    /// whose answer it did not get, an agent killed half way through restarted) gets the same
    /// address back. Wiring that is complete is left as it is and reported; anything less is
    /// removed and wired again, once.
    pub async fn add(&self, req: &Request) -> Result<Attachment, PodNetworkError> {
        let _guard = self.lock_container(&req.container_id).await;
        let pod_ns =
            Netns::open(&req.netns).map_err(|source| PodNetworkError::BadNetns { path: req.netns.clone(), source })?;
        let mtu = req.mtu.unwrap_or(self.config.mtu);
        let existing = self.allocator().get(&req.container_id).map(|a| a.ip);
        let ip = match existing {
            Some(ip) => {
                let spec = self.spec(req, &pod_ns, ip, mtu);
                match self.node.verify_pod_veth(&spec).await {
                    Ok(veth) => {
                        tracing::info!(container = %req.container_id, %ip, "ADD again: already wired, same address");
                        self.run_wired_hook(&veth.host.name, ip).await?;
                        return Ok(self.attachment(req, &veth, ip, mtu));
                    }
                    Err(e) => {
                        tracing::info!(
                            container = %req.container_id, %ip, reason = %Chain(&e),
                            "ADD again: wiring the container anew with its address"
                        );
                        self.node.delete_pod_veth(&spec.host_ifname).await?;
                    }
                }
                ip
            }
            None => self.allocator().allocate(&req.container_id, &req.ifname, &req.netns)?,
        };
        let spec = self.spec(req, &pod_ns, ip, mtu);
        let wired = match self.node.add_pod_veth(&spec).await {
            Ok(veth) => self.run_wired_hook(&veth.host.name, ip).await.map(|()| veth),
            Err(e) => Err(e.into()),
        };
        match wired {
            Ok(veth) => Ok(self.attachment(req, &veth, ip, mtu)),
            Err(e) => {
                // Nothing stays behind a failed ADD: no veth, no address.
                if let Err(del) = self.node.delete_pod_veth(&spec.host_ifname).await {
                    tracing::error!(error = %del, "cannot remove the veth of a failed ADD");
                }
                if let Err(release) = self.allocator().release(&req.container_id) {
                    tracing::error!(
                        error = &release as &dyn std::error::Error,
                        "cannot release the address of a failed ADD"
                    );
                }
                Err(e)
            }
        }
    }

    /// Sets the hook ADD calls once a pod is wired (see [`WiredHook`]).
    pub fn set_wired_hook(&self, hook: WiredHook) {
        *self.wired_hook.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hook);
    }

    async fn run_wired_hook(&self, ifname: &str, ip: Ipv4Addr) -> Result<(), PodNetworkError> {
        let hook = self.wired_hook.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match hook {
            Some(hook) => {
                hook(ifname, ip).await.map_err(|reason| PodNetworkError::Datapath { ifname: ifname.into(), reason })
            }
            None => Ok(()),
        }
    }

    /// DEL: remove the veth (if any) and release the address (if any). Idempotent; needs no
    /// namespace, since removing the host side removes the pod side.
    pub async fn del(&self, req: &Request) -> Result<(), PodNetworkError> {
        let _guard = self.lock_container(&req.container_id).await;
        self.node.delete_pod_veth(&host_ifname_for(&req.container_id)).await?;
        self.allocator().release(&req.container_id)?;
        Ok(())
    }

    /// CHECK: the container is known and its wiring is intact.
    pub async fn check(&self, req: &Request) -> Result<(), PodNetworkError> {
        let _guard = self.lock_container(&req.container_id).await;
        let Some(alloc) = self.allocator().get(&req.container_id).cloned() else {
            return Err(PodNetworkError::UnknownContainer { container_id: req.container_id.clone() });
        };
        if let Some(prev) = req.prev_ip
            && prev.addr() != alloc.ip
        {
            return Err(PodNetworkError::CheckFailed {
                container_id: req.container_id.clone(),
                what: format!("previous result says {prev}, the node allocated {}", alloc.ip),
            });
        }
        let pod_ns =
            Netns::open(&req.netns).map_err(|source| PodNetworkError::BadNetns { path: req.netns.clone(), source })?;
        let mtu = req.mtu.unwrap_or(self.config.mtu);
        let spec = self.spec(req, &pod_ns, alloc.ip, mtu);
        self.node.verify_pod_veth(&spec).await.map_err(|e| match e {
            e @ (netconf::Error::Mismatch { .. } | netconf::Error::NoSuchDevice { .. }) => {
                PodNetworkError::CheckFailed { container_id: req.container_id.clone(), what: e.to_string() }
            }
            e => e.into(),
        })?;
        Ok(())
    }

    fn spec<'a>(&self, req: &Request, pod_ns: &'a Netns, ip: Ipv4Addr, mtu: u32) -> PodVethSpec<'a> {
        PodVethSpec {
            host_ifname: host_ifname_for(&req.container_id),
            pod_ifname: req.ifname.clone(),
            pod_netns: pod_ns,
            pod_ip: ip,
            router_ip: self.config.router_ip,
            mtu,
            route_mtu: self.config.route_mtu,
            container_id: req.container_id.clone(),
        }
    }

    fn attachment(&self, req: &Request, veth: &PodVeth, ip: Ipv4Addr, mtu: u32) -> Attachment {
        let mac = |l: &netconf::LinkInfo| l.mac.as_ref().map(format_mac).unwrap_or_default();
        Attachment {
            host_interface: Interface { name: veth.host.name.clone(), mac: mac(&veth.host) },
            pod_interface: Interface { name: veth.pod.name.clone(), mac: mac(&veth.pod) },
            sandbox: req.netns.clone(),
            ip: Ipv4Net::new(ip, 32).expect("/32 is valid"),
            gateway: self.config.router_ip,
            routes: vec![PodRoute { dst: Ipv4Net::default(), gw: Some(self.config.router_ip) }],
            mtu,
            node: self.config.node_name.clone(),
        }
    }

    fn allocator(&self) -> std::sync::MutexGuard<'_, PodIpAllocator> {
        // A panic while holding the lock cannot leave the allocator half-updated (each method
        // restores its state on error), so a poisoned lock is still usable.
        self.ips.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn lock_container(&self, container_id: &str) -> ContainerGuard<'_> {
        let lock = {
            let mut locks = self.container_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(container_id.to_string()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        ContainerGuard { network: self, container_id: container_id.to_string(), lock, _guard: guard }
    }
}

/// An allocation without a veth whose container namespace is still there: an ADD that did not
/// finish, which the runtime will retry (or undo with DEL).
fn pending_add(allocation: &Allocation) -> bool {
    !allocation.netns.is_empty() && std::path::Path::new(&allocation.netns).exists()
}

/// Holds a container's lock; drops the map entry when nobody else waits on it.
struct ContainerGuard<'a> {
    network: &'a PodNetwork,
    container_id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.network.container_locks.lock().unwrap_or_else(|p| p.into_inner());
        // Held by the map, `self.lock` and the owned guard: nobody else is waiting.
        if Arc::strong_count(&self.lock) <= 3 {
            locks.remove(&self.container_id);
        }
    }
}

impl CniHandler for PodNetwork {
    async fn handle(&self, request: Request) -> Result<Option<Attachment>, CniError> {
        let result = match request.command {
            Command::Add => self.add(&request).await.map(Some),
            Command::Del => self.del(&request).await.map(|()| None),
            Command::Check => self.check(&request).await.map(|()| None),
            Command::Version => return Err(CniError::new(code::INVALID_ENV, "VERSION is answered by the plugin")),
        };
        result.map_err(|e| {
            tracing::warn!(command = ?request.command, container = %request.container_id, error = &e as &dyn std::error::Error, "CNI request failed");
            e.to_cni()
        })
    }
}
