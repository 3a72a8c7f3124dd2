//! `cilia agent`: one per node, running inside the node's network namespace.
//!
//! Start-up, in order:
//! 1. wait for the datastore (retrying, with a log line per attempt);
//! 2. wait for the operator to give this node a pod CIDR (`spec.podCIDR`);
//! 3. pod networking: the host device `cilium_host` with the router IP, and the CNI server on a
//!    root-only unix socket (pod IP allocations are recovered from the state dir);
//! 4. routes for the routing mode ([`routing_plan`]): native, `podCIDR via nodeIP` to every
//!    other node the kernel reaches without a gateway ([`direct_routes`]); tunnel, every other
//!    node's pod CIDR through `cilium_host` with the tunnel MTU and the VXLAN overlay
//!    ([`overlay`]); hybrid, direct where possible and the overlay across routers. A mode
//!    switch (a restart with another mode) removes what the old mode left;
//! 5. with kube-proxy replacement, the eBPF service datapath: opened on the node's bpffs directory
//!    (maps and links pinned there survive the agent) and run on a thread of its own
//!    ([`datapath_worker`]), `from_netdev` on the node's devices, pod programs on every pod veth
//!    ([`datapath_attach`]), socket-LB for the node's own processes, the services of the cluster
//!    ([`service_controller`]) and the sweeps of its flow state ([`datapath_gc`]);
//! 6. cluster DNS on the router IP ([`dns`]): the Kubernetes DNS spec's records, the rest forwarded;
//! 7. the Node's `Ready` condition and the membership Lease ([`node_status`], [`membership`]);
//! 8. with L2 announcements, the ARP responder's table from heartbeats and the cluster's objects
//!    ([`l2_announcer`]).
//!
//! Then it follows the node list and keeps the routes in line, with a full pass at start and
//! every `resync_interval`. Nothing is torn down at start or at exit: a restarted agent finds its
//! device, routes and pods in place and only corrects what differs, so pods keep their
//! connectivity across agent restarts.
#![forbid(unsafe_code)]

pub mod config;
pub mod datapath_attach;
pub mod datapath_gc;
pub mod datapath_worker;
pub mod direct_routes;
pub mod dns;
pub mod error;
pub mod flows;
pub mod flows_api;
pub mod heartbeat_key;
pub mod heartbeat_socket;
pub mod l2_announcer;
pub mod l2_leases;
pub mod membership;
pub mod metrics;
pub mod node_status;
pub mod node_view;
pub mod overlay;
pub mod own_interfaces;
pub mod route_reconciler;
pub mod router_ip;
pub mod routing_plan;
pub mod service_conditions;
pub mod service_controller;
pub mod service_fit;
pub mod services;

use std::{sync::Arc, time::Duration};

use api::{Condition, kinds};
use cni::{CniServer, CniServerConfig, PodNetwork, PodNetworkConfig};
use ipnet::Ipv4Net;
use netconf::Netconf;
use store::{
    Informer, Store,
    reconcile::{Backoff, Outcome, Reconcile, Runner, Wake},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{AgentConfig, ConfigError, RoutingMode, ServiceLbConfig};
pub use error::AgentError;

use crate::{node_view::NodeView, route_reconciler::RouteReconciler};

/// Events arriving within this window are handled by one route pass.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Pause before retrying a pass or a status write that failed.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the agent until `shutdown` is cancelled. Must run inside the node's network namespace.
pub async fn run(store: Arc<dyn Store>, config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    config.validate()?;
    tokio::spawn(metrics::serve_socket(config.state_dir.join(telemetry::AGENT_SOCKET), shutdown.child_token()));
    let node_name = config.node_name.clone();
    tracing::info!(
        node = %node_name,
        routing_mode = %config.routing_mode,
        auto_direct_node_routes = config.auto_direct_node_routes,
        "agent starting"
    );
    if !wait_for_datastore(store.as_ref(), &shutdown).await {
        return Ok(());
    }
    let nodes = Informer::start(store.clone(), &kinds::NODE, None);
    let Some(pod_cidr) = wait_for_pod_cidr(&nodes, &node_name, &shutdown).await else {
        return Ok(());
    };
    if let Some(native) = config.native_routing_cidr
        && !native.contains(&pod_cidr)
    {
        tracing::warn!(%pod_cidr, native_routing_cidr = %native, "the pod CIDR is outside the native routing CIDR");
    }

    let kernel = Netconf::current()?;
    let router_ip = router_ip::choose(&kernel, pod_cidr).await?;
    let (cni_server, network) = start_pod_networking(&config, pod_cidr, router_ip).await?;
    let node_ip = nodes.get(None, &node_name).and_then(|o| NodeView::of(&o).internal_ip);
    let flow_hub = start_observability(&config, &network, pod_cidr, node_ip, &shutdown);

    let mut controllers = Controllers::new(shutdown.child_token());
    if let Some(lb) = &config.service_lb {
        start_service_datapath(&mut controllers, &store, &config, lb, &network, pod_cidr, node_ip, &flow_hub)?;
    }
    if let Some(port) = config.dns_port {
        start_cluster_dns(&mut controllers, &store, router_ip, port);
    }

    let leave = shutdown.child_token();
    let membership =
        tokio::spawn(membership::maintain(store.clone(), node_name.clone(), config.lease_ttl, leave.clone()));
    let result = follow_nodes(store.clone(), config, kernel, nodes, pod_cidr, router_ip, shutdown).await;

    leave_cluster(store.as_ref(), &node_name).await;
    leave.cancel();
    let _ = membership.await;
    controllers.stop().await;
    drop(cni_server);
    tracing::info!(node = %node_name, "agent stopped");
    result
}

/// Pod networking: the host device with the router IP, and the CNI server (pod IP allocations
/// are recovered from the state dir).
async fn start_pod_networking(
    config: &AgentConfig,
    pod_cidr: Ipv4Net,
    router_ip: std::net::Ipv4Addr,
) -> Result<(CniServer, Arc<PodNetwork>), AgentError> {
    let (cni_server, network) = CniServer::start(CniServerConfig {
        pod_network: PodNetworkConfig {
            node_name: config.node_name.clone(),
            pod_cidr,
            router_ip,
            mtu: config.mtu,
            // In overlay modes pods learn the tunnel MTU from their routes, as on a Cilium node
            // (the veth stays at the device MTU).
            route_mtu: routing_plan::uses_overlay(config.routing_mode)
                .then(|| config.mtu.saturating_sub(routing_plan::TUNNEL_OVERHEAD)),
            node_netns: None,
            state_dir: config.state_dir.clone(),
        },
        socket_path: config.cni_socket.clone(),
    })
    .await?;
    tracing::info!(
        %pod_cidr,
        %router_ip,
        pods = network.allocations().len(),
        socket = %cni_server.socket_path().display(),
        "pod networking ready"
    );
    Ok((cni_server, network))
}

/// The flows API and the metrics endpoint. Returns the node's flow hub, which the eBPF
/// datapath's events fill (it stays empty without it).
fn start_observability(
    config: &AgentConfig,
    network: &Arc<PodNetwork>,
    pod_cidr: Ipv4Net,
    node_ip: Option<std::net::Ipv4Addr>,
    shutdown: &CancellationToken,
) -> Arc<flows::FlowHub> {
    let flow_hub = flows::FlowHub::new(&config.node_name, flows::DEFAULT_CAPACITY);
    flows_api::start(flow_hub.clone(), &config.state_dir, node_ip.map(Into::into), shutdown.child_token());
    tokio::spawn(metrics::start(
        metrics::Sources {
            bpf_dir: config.service_lb.as_ref().map(|lb| lb.bpf_dir.clone()),
            network: network.clone(),
            pod_cidr,
            flows: flow_hub.clone(),
        },
        node_ip.map(|ip| std::net::SocketAddr::new(ip.into(), telemetry::AGENT_PORT)),
        shutdown.child_token(),
    ));
    flow_hub
}

/// The controllers that run beside the route follower, stopped together when the agent leaves.
struct Controllers {
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Controllers {
    fn new(shutdown: CancellationToken) -> Self {
        Controllers { shutdown, tasks: Vec::new() }
    }

    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The eBPF service datapath and its controllers: flow events, programs on pod and node
/// devices, L2 announcements, the cluster's services and their conditions.
#[allow(clippy::too_many_arguments)]
fn start_service_datapath(
    controllers: &mut Controllers,
    store: &Arc<dyn Store>,
    config: &AgentConfig,
    lb: &ServiceLbConfig,
    network: &Arc<PodNetwork>,
    pod_cidr: Ipv4Net,
    node_ip: Option<std::net::Ipv4Addr>,
    flow_hub: &Arc<flows::FlowHub>,
) -> Result<(), AgentError> {
    let node_name = &config.node_name;
    let stop = controllers.shutdown.clone();
    let datapath = open_datapath(lb, node_name, pod_cidr)?;
    controllers.spawn(flows::reader::run(
        store.clone(),
        flow_hub.clone(),
        lb.bpf_dir.clone(),
        flows::EventsLevel::Medium,
        stop.clone(),
    ));
    // New pods get their programs before CNI ADD answers, so their first packet meets them;
    // the link poll below catches pods wired before this point.
    let hook_datapath = datapath.clone();
    network.set_wired_hook(std::sync::Arc::new(move |ifname: &str, pod_addr| {
        let (datapath, ifname) = (hook_datapath.clone(), ifname.to_string());
        Box::pin(async move {
            datapath
                .try_call(move |dp| dp.attach_pod_device(&ifname, pod_addr))
                .await
                .map_err(|e| api::error::Chain(&e).to_string())
        })
    }));
    let pod_network = network.clone();
    let pod_address = std::sync::Arc::new(move |ifname: &str| pod_network.address_of_host_veth(ifname));
    let attacher = datapath_attach::Attacher::new(datapath.clone(), pod_address, lb.devices.clone(), node_ip);
    controllers.spawn(attacher.run(Netconf::current()?, lb.link_poll, stop.clone()));
    let options = services::BuildOptions {
        node_name: node_name.clone(),
        default_algorithm: lb.algorithm,
        unreachable_nodes: Default::default(),
    };
    let (unreachable_tx, unreachable_rx) = tokio::sync::watch::channel(Default::default());
    if let Some(l2) = &config.l2 {
        controllers.spawn(l2_announcer::run(
            store.clone(),
            node_name.clone(),
            l2.clone(),
            datapath.clone(),
            unreachable_tx,
            stop.clone(),
        ));
    }
    controllers.spawn(datapath_gc::run(datapath.clone(), lb.gc_interval, stop.clone()));
    let controller = service_controller::ServiceController::new(options, datapath);
    let (left_out_tx, left_out_rx) = tokio::sync::watch::channel(Vec::new());
    controllers.spawn(service_controller::run(store.clone(), controller, unreachable_rx, left_out_tx, stop.clone()));
    controllers.spawn(service_conditions::run(store.clone(), node_name.clone(), left_out_rx, stop));
    Ok(())
}

/// Cluster DNS on the router IP: the records' controller and the server.
fn start_cluster_dns(controllers: &mut Controllers, store: &Arc<dyn Store>, router_ip: std::net::Ipv4Addr, port: u16) {
    let (dns_records, dns_rx) = tokio::sync::watch::channel(Arc::new(dns::Records::default()));
    let stop = controllers.shutdown.clone();
    controllers.spawn(dns::controller::run(store.clone(), dns_records, stop.clone()));
    controllers.spawn(dns::serve(router_ip, port, dns_rx, stop));
}

/// Follows the node list until shutdown: routes for the routing mode and the Ready condition.
async fn follow_nodes(
    store: Arc<dyn Store>,
    config: AgentConfig,
    kernel: Netconf,
    nodes: Informer,
    pod_cidr: Ipv4Net,
    router_ip: std::net::Ipv4Addr,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let overlay = datapath::PinnedOverlay::new(config.bpf_dir.clone());
    let routes =
        RouteReconciler::new(kernel, overlay, &config.node_name, pod_cidr, router_ip, config.auto_direct_node_routes)
            .with_mode(config.routing_mode, config.mtu, config.tunnel_port);
    let ready = node_status::ready(
        true,
        node_status::REASON_READY,
        format!(
            "cilia agent is ready: pod CIDR {pod_cidr}, router IP {router_ip}, {} routing{}",
            config.routing_mode,
            if config.auto_direct_node_routes { " with auto direct node routes" } else { "" }
        ),
    );
    let agent = Agent { store, config, pod_cidr, nodes, routes, ready, ready_written: false };
    agent.follow(shutdown).await
}

/// Leaving: says so on the Node, bounded so that an unreachable datastore does not hold up the
/// exit. Devices and routes stay for the next start.
async fn leave_cluster(store: &dyn Store, node_name: &str) {
    let stopped = node_status::ready(false, node_status::REASON_STOPPED, "cilia agent stopped");
    match tokio::time::timeout(Duration::from_secs(2), node_status::write(store, node_name, &stopped)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %api::error::Chain(&e), "cannot mark the node not ready"),
        Err(_) => tracing::warn!("cannot mark the node not ready: the datastore did not answer in time"),
    }
}

/// Opens the node's datapath (mounting bpffs first if needed) and attaches socket-LB. Maps and
/// links of a previous run are picked up from the pins, so forwarding never stopped.
fn open_datapath(
    lb: &ServiceLbConfig,
    node: &str,
    pod_cidr: Ipv4Net,
) -> Result<datapath_worker::DatapathHandle, AgentError> {
    datapath::ensure_bpffs_for(&lb.bpf_dir)?;
    reserve_nat_ports();
    // Room in the device map for every pod the node's CIDR can hold.
    let sizes = datapath::DatapathConfig {
        netdevs_max: datapath::DatapathConfig::netdevs_for_pod_cidr(pod_cidr.prefix_len()),
        services_max: lb.map_max,
        backends_max: lb.map_max,
        revnat_max: lb.map_max,
        ..datapath::DatapathConfig::default()
    };
    let mut dp = datapath::Datapath::open_with(&lb.bpf_dir, &sizes)?;
    tracing::info!(
        node,
        pins = %lb.bpf_dir.display(),
        frontends = dp.lb_state().revnat.len(),
        "service datapath loaded"
    );
    if lb.socket_lb {
        match datapath_attach::cgroup2_root() {
            Some(root) => {
                datapath::LbDatapath::attach_socket_lb(&mut dp, &root)?;
                tracing::info!(cgroup = %root.display(), "socket-LB attached for this node's network namespace");
            }
            None => tracing::warn!("no cgroup v2 mount: socket-LB is off, node processes reach services per packet"),
        }
    }
    datapath_worker::DatapathHandle::spawn(Box::new(dp))
        .map_err(|source| AgentError::Datapath(datapath::Error::Syscall { call: "spawn the datapath thread", source }))
}

/// Keeps the node's own connections off the ports SNAT hands out, also on nodes whose ephemeral
/// port range was widened into them: the node's outgoing connections are not in the SNAT map, so a
/// shared port would hand their replies to a translated flow. The setting is per network namespace.
fn reserve_nat_ports() {
    let range = format!("{}-{}", datapath::abi::NAT_PORT_MIN, datapath::abi::NAT_PORT_MAX);
    if let Err(e) = netconf::sysctl::write_here("net/ipv4/ip_local_reserved_ports", &range) {
        tracing::warn!(%range, error = %api::error::Chain(&e), "cannot reserve the SNAT port range for the datapath");
    }
}

/// Probes the datastore until it answers; `false` if shut down first (said at INFO while it
/// waits: in the lab the agent starts together with etcd).
pub async fn wait_for_datastore(store: &dyn Store, shutdown: &CancellationToken) -> bool {
    store::datastore_wait::wait_ready(store, "agent", shutdown).await
}

/// Waits until the node's Node carries a pod CIDR; `None` if shut down first. Says what it waits
/// for at once and then every 15 s, with the operator's reason when it wrote one.
async fn wait_for_pod_cidr(nodes: &Informer, name: &str, shutdown: &CancellationToken) -> Option<Ipv4Net> {
    tokio::select! {
        () = nodes.wait_synced() => {}
        () = shutdown.cancelled() => return None,
    }
    let mut sub = nodes.subscribe();
    let mut next_log = Instant::now();
    loop {
        let obj = nodes.get(None, name);
        if let Some(cidr) = obj.as_ref().and_then(|o| NodeView::of(o).pod_cidr) {
            return Some(cidr);
        }
        if Instant::now() >= next_log {
            match &obj {
                None => tracing::info!(node = %name, "waiting for the Node object to be registered"),
                Some(o) => {
                    let why = o
                        .lookup_path("status.conditions")
                        .and_then(|c| serde_json::from_value::<Vec<Condition>>(c).ok())
                        .and_then(|c| Condition::find(&c, "cilia.io/PodCIDRAllocated").cloned())
                        .filter(|c| c.status == "False");
                    match why {
                        Some(c) => tracing::warn!(node = %name, reason = %c.reason, "no pod CIDR yet: {}", c.message),
                        None => tracing::info!(node = %name, "waiting for the operator to assign a pod CIDR"),
                    }
                }
            }
            next_log = Instant::now() + Duration::from_secs(15);
        }
        tokio::select! {
            change = sub.recv() => { change?; }
            () = tokio::time::sleep_until(next_log) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

struct Agent {
    store: Arc<dyn Store>,
    config: AgentConfig,
    pod_cidr: Ipv4Net,
    nodes: Informer,
    routes: RouteReconciler,
    ready: Condition,
    ready_written: bool,
}

impl Agent {
    /// Keeps routes and the Ready condition in line with the node list until shutdown.
    async fn follow(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        Runner::new("routes")
            .debounce(DEBOUNCE)
            .backoff(Backoff::fixed(RETRY))
            // Routes that failed are retried on the retry's schedule, not on every node event.
            .hold_changes_while_retrying()
            .watch(&self.nodes)
            .every(self.config.resync_interval, |_| Wake::Now)
            .run(self, shutdown)
            .await
            .map(drop)
    }
}

impl Reconcile for Agent {
    type Error = AgentError;

    /// One pass: routes, then the Ready condition. Stops the agent when its pod CIDR changed.
    async fn pass(&mut self) -> Result<Outcome, AgentError> {
        if let Some(own) = self.nodes.get(None, &self.config.node_name) {
            self.check_own(&own)?;
        }
        Ok(if self.reconcile().await { Outcome::Retry } else { Outcome::Done })
    }
}

impl Agent {
    /// Routes, then the Ready condition. Returns whether something failed.
    async fn reconcile(&mut self) -> bool {
        let views: Vec<NodeView> = self.nodes.snapshot().iter().map(NodeView::of).collect();
        let mut retry = false;
        match self.routes.reconcile(&views).await {
            Ok(outcome) => {
                retry |= outcome.failed > 0;
                if outcome.installed + outcome.removed + outcome.tunnel_written + outcome.tunnel_deleted > 0 {
                    tracing::info!(
                        wanted = outcome.wanted,
                        installed = outcome.installed,
                        removed = outcome.removed,
                        tunnel_written = outcome.tunnel_written,
                        tunnel_deleted = outcome.tunnel_deleted,
                        "node routes reconciled"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %api::error::Chain(&e), "reconciling routes failed; retrying");
                retry = true;
            }
        }
        let own = self.nodes.get(None, &self.config.node_name);
        let needs_ready =
            !self.ready_written || own.as_ref().is_some_and(|o| !node_status::has_condition(o, &self.ready));
        if needs_ready && own.is_some() {
            match node_status::write(self.store.as_ref(), &self.config.node_name, &self.ready).await {
                Ok(changed) => {
                    if changed {
                        tracing::info!(node = %self.config.node_name, "node marked Ready");
                    }
                    self.ready_written = true;
                }
                Err(e) => {
                    tracing::warn!(error = %api::error::Chain(&e), "cannot mark the node Ready; retrying");
                    retry = true;
                }
            }
        }
        retry
    }

    /// The node's own object changed: a new pod CIDR means starting over.
    fn check_own(&self, obj: &api::Object) -> Result<(), AgentError> {
        match NodeView::of(obj).pod_cidr {
            Some(new) if new != self.pod_cidr => {
                Err(AgentError::PodCidrChanged { node: self.config.node_name.clone(), old: self.pod_cidr, new })
            }
            _ => Ok(()),
        }
    }
}
