//! `cilia lab kubelet --node N`: the pod runtime of one lab node, run by the lab's supervisor
//! inside the node's network namespace.
//!
//! It watches the pods bound to its node and gives each a [`worker::Worker`]. On start it first
//! adopts what a previous run left (records, namespaces, processes) and removes pod namespaces
//! nobody owns any more, so restarting it never disturbs a running pod.

pub mod cni;
pub mod container;
pub mod dns;
pub mod drain;
pub mod paths;
pub mod record;
mod worker;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use api::{
    kinds,
    types::{Node, Pod},
};
use futures::FutureExt;
use store::{Informer, Store};
use tokio::{
    sync::{Semaphore, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use self::{cni::CniPlugin, paths::NodePaths, record::PodRecord, worker::Worker};
use crate::{
    error::{Error, Result},
    pod_netns,
};

/// Pod set-ups and teardowns running at once. Each spawns `ip` and the plugin; more in
/// parallel only queue up on the machine's cores and the agent.
const PARALLEL_KERNEL_WORK: usize = 8;

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub lab: lab::Lab,
    pub node: String,
    /// The agent's CNI socket; by default the node's, under the lab's state dir.
    pub agent_socket: Option<PathBuf>,
    /// The plugin executable; by default `cilia-cni` beside the running executable.
    pub cni_plugin: Option<PathBuf>,
}

/// What every worker of the node shares.
pub struct NodeContext {
    pub store: Arc<dyn Store>,
    pub node: String,
    pub paths: NodePaths,
    pub cni: CniPlugin,
    /// The node's InternalIP (`status.hostIP` of its pods), once its Node object has one.
    pub host_ip: watch::Receiver<Option<String>>,
    pub kernel_work: Semaphore,
}

struct Running {
    desired: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Runs the node's pod runtime until `shutdown`; pods keep running after it returns.
pub async fn run(store: Arc<dyn Store>, config: KubeletConfig, shutdown: CancellationToken) -> Result<()> {
    let paths = NodePaths::new(&config.lab, &config.node);
    std::fs::create_dir_all(paths.pods_dir()).map_err(|e| Error::io("create directory", paths.pods_dir(), e))?;
    let socket = config.agent_socket.clone().unwrap_or_else(|| paths.agent_socket());
    let mut cni = CniPlugin::beside_current_exe(&socket)
        .map_err(|e| Error::io("find the running executable", "/proc/self/exe", e))?;
    if let Some(plugin) = &config.cni_plugin {
        cni.binary = plugin.clone();
    }
    if !cni.binary.exists() {
        tracing::error!(plugin = %cni.binary.display(), "the CNI plugin is missing; pods will wait in ContainerCreating");
    }

    let records = record::load_all(&paths.pods_dir());
    remove_unowned_namespaces(&config.lab, &paths).await;

    let pods = Informer::start(store.clone(), &kinds::POD, None);
    let nodes = Informer::start(store.clone(), &kinds::NODE, None);
    let mut pod_events = pods.subscribe();
    let mut node_events = nodes.subscribe();
    tokio::select! {
        () = async { pods.wait_synced().await; nodes.wait_synced().await } => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    let (host_ip_tx, host_ip) = watch::channel(host_ip_of(&nodes, &config.node));
    let ctx = Arc::new(NodeContext {
        store,
        node: config.node.clone(),
        paths,
        cni,
        host_ip,
        kernel_work: Semaphore::new(PARALLEL_KERNEL_WORK),
    });
    tracing::info!(node = %config.node, adopted = records.len(), "pod runtime running");

    let mut running: HashMap<String, Running> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let bound = bound_pods(&pods, &config.node);
    for record in records {
        let desired = bound.get(&record.uid).cloned();
        let uid = record.uid.clone();
        running.insert(uid, spawn_worker(&ctx, record, desired));
    }
    loop {
        host_ip_tx.send_if_modified(|ip| {
            let now = host_ip_of(&nodes, &config.node);
            let changed = *ip != now;
            *ip = now;
            changed
        });
        let bound = bound_pods(&pods, &config.node);
        // Workers that are done. One that returned has torn its pod down: its uid is not set
        // up again while the deleted object lingers in the cache. One that panicked is started
        // again from its record.
        running.retain(|uid, r| {
            match (&mut r.task).now_or_never() {
                None => return true,
                Some(Ok(())) => {
                    finished.insert(uid.clone());
                }
                Some(Err(e)) => tracing::error!(uid = %uid, error = &e as &dyn std::error::Error, "a pod worker failed; starting it again"),
            }
            false
        });
        finished.retain(|uid| bound.contains_key(uid));
        for (uid, pod) in &bound {
            match running.get(uid) {
                Some(r) => {
                    r.desired.send_if_modified(|current| {
                        let changed = current.as_ref() != Some(pod);
                        *current = Some(pod.clone());
                        changed
                    });
                }
                None if !finished.contains(uid) => {
                    let record =
                        PodRecord::load(&ctx.paths.record(uid)).unwrap_or_else(|_| new_record(&config.lab, pod));
                    running.insert(uid.clone(), spawn_worker(&ctx, record, Some(pod.clone())));
                }
                None => {}
            }
        }
        for (uid, r) in &running {
            if !bound.contains_key(uid) {
                r.desired.send_if_modified(|current| current.take().is_some());
            }
        }
        tokio::select! {
            _ = pod_events.recv() => {}
            _ = node_events.recv() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

fn spawn_worker(ctx: &Arc<NodeContext>, record: PodRecord, desired: Option<Pod>) -> Running {
    let (tx, rx) = watch::channel(desired);
    let task = tokio::spawn(Worker::new(ctx.clone(), record, rx).run());
    Running { desired: tx, task }
}

fn new_record(lab: &lab::Lab, pod: &Pod) -> PodRecord {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    PodRecord {
        netns: pod_netns::name(lab, &namespace, &pod.metadata.name, &uid),
        container_id: uid.clone(),
        uid,
        namespace,
        name: pod.metadata.name.clone(),
        ifname: "eth0".into(),
        cni_result: None,
        start_time: None,
        grace_seconds: pod.spec.termination_grace_period_seconds,
        containers: Default::default(),
    }
}

/// Pods bound to `node` that the runtime runs, by uid: all but mirror pods, which stand for the
/// node's own processes (the agents' and the operator's pods in kube-system).
fn bound_pods(pods: &Informer, node: &str) -> HashMap<String, Pod> {
    pods.snapshot()
        .iter()
        .filter(|o| o.lookup_path("spec.nodeName").is_some_and(|n| n == node))
        .filter_map(|o| o.to_typed::<Pod>().ok())
        .filter(|p| !p.is_mirror())
        .filter_map(|p| Some((p.metadata.uid.clone()?, p)))
        .collect()
}

fn host_ip_of(nodes: &Informer, node: &str) -> Option<String> {
    nodes.get(None, node)?.to_typed::<Node>().ok()?.internal_ip().map(str::to_string)
}

/// Pod namespaces of the lab that no record of any node names: left by a crash between
/// removing a record's namespace and the record, or made by hand. The namespace list is read
/// before the records, and records are written before namespaces are created, so a pod being
/// set up on another node right now is never taken for a leftover.
async fn remove_unowned_namespaces(lab: &lab::Lab, paths: &NodePaths) {
    let present = lab::netns::list_with_prefix(&pod_netns::prefix(lab));
    let owned = record::namespaces_in_use(paths.nodes_dir());
    for ns in present.into_iter().filter(|ns| !owned.contains(ns)) {
        tracing::warn!(netns = %ns, "removing a pod namespace no pod owns");
        pod_netns::kill_all_inside(&ns).await;
        if let Err(e) = pod_netns::delete(&ns).await {
            tracing::error!(netns = %ns, error = &e as &dyn std::error::Error, "removing a leftover pod namespace");
        }
    }
}
